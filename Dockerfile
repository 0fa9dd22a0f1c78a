# syntax=docker/dockerfile:1
# ssm-sidecar: build with `docker build -t ssm-sidecar:0.1.0 .` (see docs/deploy-container.md).
# For reproducible builds pin the base by digest: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: resolve and install the pinned dependencies into a self-contained venv -----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/ssm-sidecar
COPY pyproject.toml constraints.txt README.md ./
COPY agent ./agent
# Every dependency comes as a wheel pinned by constraints.txt; pip compiles the bytecode here,
# so the read-only root filesystem at run time never needs __pycache__ writes.
RUN /opt/ssm-sidecar/bin/pip install --no-cache-dir --constraint constraints.txt . \
    && /opt/ssm-sidecar/bin/pip uninstall --yes pip \
    && /opt/ssm-sidecar/bin/ssm-sidecar --version

# --- runtime: the slim base and the venv, nothing else ------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ssm-sidecar" \
      org.opencontainers.image.description="Serves AWS SSM Parameter Store values beside an application: localhost HTTP API, tmpfs files, SIGHUP on change." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# No package manager for Python at run time: pip and setuptools leave the image.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel

COPY --from=builder /opt/ssm-sidecar /opt/ssm-sidecar
ENV PATH=/opt/ssm-sidecar/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SSM_SIDECAR_CONFIG=/etc/ssm-sidecar/config.toml

# 65532: the conventional "nonroot" uid/gid; no passwd entry is needed.
USER 65532:65532
WORKDIR /

# The agent only listens on loopback, so the check runs inside the container's network namespace.
# It talks HTTP directly (no proxy variables, no token): 200 from /readyz once values are loaded.
# Change 2773 here if your config moves http.listen.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-I", "-S", "-c", "import http.client as h,sys; c=h.HTTPConnection('127.0.0.1',2773,timeout=3); c.request('GET','/readyz'); sys.exit(c.getresponse().status!=200)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["ssm-sidecar"]
CMD ["run"]
