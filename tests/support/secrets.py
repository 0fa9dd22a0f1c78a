"""Configs and seeds for Secrets Manager tests (moto's Secrets Manager)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config import Config, parse_config
from tests.support.builders import agent_config, ssm_source


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
    data = agent_config(
        ssm_source(endpoint_url),
        parameters=parameters or None,
        secrets=secrets,
        refresh={"interval": interval, "jitter": 0.0, "max_backoff": "2s"},
        **sections,
    )
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


def moto_wire(endpoint_url: str, operation: str, body: dict[str, Any]) -> tuple[int, Any]:
    """Secrets Manager's own answer on the wire (status, decoded JSON), SigV4-signed as an SDK
    would send it: what the agent's answers are compared with field by field."""
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.support.moto import DUMMY_AWS_ENV, REGION

    request = AWSRequest(
        method="POST",
        url=endpoint_url.rstrip("/") + "/",
        data=json.dumps(body).encode(),
        headers={
            "X-Amz-Target": f"secretsmanager.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    credentials = Credentials(
        DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"], DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"]
    )
    SigV4Auth(credentials, "secretsmanager", REGION).add_auth(request)
    prepared = urllib.request.Request(  # noqa: S310 (a loopback http URL)
        request.url, data=request.body, headers=dict(request.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(prepared, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
