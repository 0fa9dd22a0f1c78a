"""`[fleet]`: keys, defaults and the `file: key: reason` lines of bad values."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config import ConfigError, parse_config

BASE: dict[str, Any] = {"parameters": [{"path": "/app"}]}
FLEET = {"url": "redis://valkey:6379/0", "name": "app-prod", "key_parameter": "/app/fleet-key"}


def problems(**fleet: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "fleet": {**FLEET, **fleet}}, file="c.toml")
    return str(err.value)


def test_defaults_and_absent() -> None:
    assert parse_config(BASE).fleet is None
    cfg = parse_config({**BASE, "fleet": FLEET})
    assert cfg.fleet is not None
    assert (cfg.fleet.watch_interval, cfg.fleet.safety_interval) == (2.0, 900.0)
    valkey = parse_config({**BASE, "fleet": {**FLEET, "url": "valkeys://h:6380"}}).fleet
    assert valkey is not None and valkey.redis_url == "rediss://h:6380"


def test_bad_values_name_the_key() -> None:
    assert "c.toml: fleet.url: must be a redis://" in problems(url="http://x")
    assert "c.toml: fleet.name: " in problems(name="a b")
    assert "c.toml: fleet.key_parameter: " in problems(key_parameter="key")
    assert "c.toml: fleet.watch_interval: must be at least 200ms" in problems(watch_interval="50ms")
    assert "c.toml: fleet.safety_interval: must not be shorter" in problems(
        watch_interval="10s", safety_interval="5s"
    )
    assert "c.toml: fleet.bogus: unknown key" in problems(bogus=1)


def test_fleet_needs_ssm_and_no_secrets() -> None:
    with pytest.raises(ConfigError, match=r"c.toml: fleet: needs source.type"):
        parse_config(
            {**BASE, "source": {"type": "file", "path": "v.toml"}, "fleet": FLEET}, file="c.toml"
        )
    with pytest.raises(
        ConfigError, match=r"c.toml: fleet: cannot be combined with \[\[secrets\]\]"
    ):
        parse_config({**BASE, "secrets": [{"id": "x"}], "fleet": FLEET}, file="c.toml")
