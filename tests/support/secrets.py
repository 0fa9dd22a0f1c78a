"""Configs and seeds for Secrets Manager tests (moto's Secrets Manager)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config import Config, parse_config


def secrets_config(
    endpoint_url: str,
    secrets: list[dict[str, Any]],
    base: Path,
    *,
    parameters: list[dict[str, Any]] | None = None,
    interval: str = "30s",
    **sections: Any,
) -> Config:
    """A config for the ssm source (and Secrets Manager) pointed at moto or the fault proxy."""
    data: dict[str, Any] = {
        "source": {
            "type": "ssm",
            "region": "us-east-1",
            "endpoint_url": endpoint_url,
            "max_attempts": 1,
            "timeout": "5s",
        },
        "secrets": secrets,
        "refresh": {"interval": interval, "jitter": 0.0, "max_backoff": "2s"},
        "http": {"enabled": False},
        **sections,
    }
    if parameters:
        data["parameters"] = parameters
    return parse_config(data, file=str(base / "config.toml"), base=base)


def seed_db_secret(client: Any, name: str = "prod/db") -> dict[str, str]:
    """A JSON secret with the fields an app's database settings need."""
    fields = {
        "username": "app_user",
        "password": 'p@ss "w0rd" $HOME\\n=x',
        "host": "db.internal",
        "port": "5432",
    }
    client.create_secret(Name=name, SecretString=json.dumps(fields))
    return fields
