"""The AWS region of the SSM source, found the way the AWS SDKs find it.

`source.region`, then `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the `region` of the AWS
profile (`AWS_PROFILE`, `AWS_CONFIG_FILE`), then the instance metadata service. botocore alone
reads only `AWS_DEFAULT_REGION` and the profile, so an agent configured the way the other SDKs
and container platforms are (`AWS_REGION`) would have no region at all.

Instance metadata is asked last and only when nothing else answered, with botocore's own
settings (1 s timeout, 1 attempt, `AWS_EC2_METADATA_DISABLED`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`),
so a start outside EC2 with a region set costs nothing. A source with no region is a config error:
`check` and `run` exit 2 naming `source.region`, and a reload to such a config is refused.
"""

from __future__ import annotations

import os

import botocore.session
import structlog
from botocore.utils import IMDSRegionProvider

from agent.config import Config, ConfigError, region_problem

log = structlog.get_logger(__name__)

ENV_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
NO_REGION = (
    "no AWS region: set source.region, or AWS_REGION or AWS_DEFAULT_REGION in the environment, "
    "or region in the AWS profile (AWS_PROFILE, AWS_CONFIG_FILE); instance metadata {imds}"
)


def resolve_region(configured: str | None) -> tuple[str, str] | None:
    """(region, where it came from), or None when nothing gives one."""
    if configured:
        return configured, "source.region"
    for var in ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value, var
    session = botocore.session.Session()
    try:
        # AWS_DEFAULT_REGION was looked at above; what is left of botocore's chain is the profile.
        region = session.get_config_variable("region")
    except Exception as exc:  # a profile that does not exist, a broken file
        log.warning("aws_profile_unreadable", error=f"{type(exc).__name__}: {exc}")
        region = None
    if region:
        return str(region), f"profile {session.profile or 'default'}"
    try:
        region = IMDSRegionProvider(session).provide()
    except Exception as exc:  # botocore's fetcher raises for a bad endpoint setting
        log.warning("instance_metadata_unusable", error=f"{type(exc).__name__}: {exc}")
        region = None
    if region:
        return str(region), "instance metadata"
    return None


def resolve_source_region(cfg: Config) -> Config:
    """`cfg` with `source.region` filled in for an SSM source; ConfigError when none is found."""
    if cfg.source.type != "ssm":
        return cfg
    found = resolve_region(cfg.source.region)
    file = str(cfg.origin)
    if found is None:
        disabled = os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"
        imds = "is disabled (AWS_EC2_METADATA_DISABLED)" if disabled else "did not answer"
        raise ConfigError(file, [("source.region", NO_REGION.format(imds=imds))])
    region, origin = found
    problem = region_problem(region)
    if problem:
        raise ConfigError(file, [("source.region", f"{problem} (from {origin})")])
    if region == cfg.source.region:
        return cfg
    log.info("aws_region_resolved", region=region, origin=origin)
    return cfg.model_copy(update={"source": cfg.source.model_copy(update={"region": region})})
