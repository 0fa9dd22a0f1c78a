"""Builds the configured source."""

from __future__ import annotations

from agent.config import Config
from agent.metrics import Metrics
from agent.sources.aws import AwsSession
from agent.sources.base import Source
from agent.sources.file import FileSource
from agent.sources.region import resolve_source_region
from agent.sources.ssm import SsmSource


def build_source(cfg: Config, metrics: Metrics) -> Source:
    """The source for `cfg`; ConfigError when an SSM source has no region from anywhere."""
    if cfg.source.type == "file":
        assert cfg.source.path is not None
        return FileSource(cfg.source.path, cfg.parameters, cfg.secrets)
    if cfg.source.region is None:  # a Config not read through the CLI or a reload
        cfg = resolve_source_region(cfg)
    if not cfg.secrets:
        return SsmSource(
            cfg.source,
            cfg.parameters,
            metrics,
            list_by=cfg.refresh.list_by,
            relist_every=cfg.refresh.relist_every,
        )
    # Imported only with [[secrets]]: an agent without them never loads it (memory, issue #15).
    from agent.sources.composite import CompositeSource
    from agent.sources.secrets import SecretsManagerSource

    # One session for both services: a role_arn is assumed once for both.
    aws = AwsSession(cfg.source)
    return CompositeSource(
        SsmSource(
            cfg.source,
            cfg.parameters,
            metrics,
            aws=aws,
            list_by=cfg.refresh.list_by,
            relist_every=cfg.refresh.relist_every,
        ),
        SecretsManagerSource(cfg.source, cfg.secrets, metrics, aws=aws),
    )
