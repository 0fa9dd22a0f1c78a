"""Builds the configured source."""

from __future__ import annotations

from agent.config import Config
from agent.metrics import Metrics
from agent.sources.base import Source
from agent.sources.file import FileSource
from agent.sources.ssm import SsmSource


def build_source(cfg: Config, metrics: Metrics) -> Source:
    if cfg.source.type == "file":
        assert cfg.source.path is not None
        return FileSource(cfg.source.path, cfg.parameters)
    return SsmSource(cfg.source, cfg.parameters, metrics)
