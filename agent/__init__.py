"""ssm-sidecar: AWS SSM Parameter Store values beside an application."""

__version__ = "0.1.0"
