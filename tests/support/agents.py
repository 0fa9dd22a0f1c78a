"""Build configs and in-process agents for integration tests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from agent.app import Agent
from agent.config import Config, parse_config
from tests.support.builders import agent_config, ssm_source


def ssm_config(
    endpoint_url: str,
    parameters: list[dict[str, Any]],
    base: Path,
    *,
    interval: str = "30s",
    max_backoff: str = "2s",
    max_attempts: int = 1,
    **sections: dict[str, Any],
) -> Config:
    """A config for the ssm source pointed at moto (or the fault proxy in front of it)."""
    data = agent_config(
        ssm_source(endpoint_url, max_attempts=max_attempts),
        parameters=parameters,
        refresh={"interval": interval, "jitter": 0.0, "max_backoff": max_backoff},
        **sections,
    )
    return parse_config(data, file=str(base / "config.toml"), base=base)


def agent_for(cfg: Config, seed: int = 7) -> Agent:
    return Agent(cfg, rng=random.Random(seed))


def served(agent: Agent, name: str) -> str | None:
    """The value `agent` serves for `name` now, None when it serves none."""
    p = agent.state.snapshot.get(name)
    return None if p is None else str(p.value)
