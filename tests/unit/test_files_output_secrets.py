"""Secrets are written beside parameters: files.dir/<key>, exact bytes (binary too)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.files.output import FilesOutput
from agent.snapshot import Parameter, Secret, Snapshot

T = datetime(2026, 1, 1, tzinfo=UTC)


def secret(name: str, key: str, value: str | None, binary: bytes | None = None) -> Secret:
    return Secret(name, key, f"arn:x:{name}", "v1", ("AWSCURRENT",), T, value, binary)


async def test_secrets_written_by_key_with_exact_bytes(tmp_path: Path) -> None:
    out = FilesOutput(FilesConfig(dir=tmp_path / "run"), Metrics())
    param = Parameter("/app/flag", "flag", "String", "on", 1, T)
    secrets = [
        secret("prod/db", "db", '{"password": "x"}'),
        secret("prod/cert", "certs/tls.der", None, b"\x00\xff\x10raw"),
    ]
    snap = Snapshot.build({param.name: param}, 1, {s.ident: s for s in secrets})
    await out.publish(snap, Snapshot().diff(snap), True)
    run = tmp_path / "run"
    assert (run / "flag").read_bytes() == b"on"
    assert (run / "db").read_bytes() == b'{"password": "x"}'
    assert (run / "certs" / "tls.der").read_bytes() == b"\x00\xff\x10raw"
    assert not out.problems

    rotated = secret("prod/db", "db", '{"password": "y"}')
    rotated = Secret(
        rotated.name, rotated.key, rotated.arn, "v2", ("AWSCURRENT",), T, rotated.string
    )
    new = Snapshot.build({param.name: param}, 2, {s.ident: s for s in (rotated, secrets[1])})
    change = snap.diff(new)
    assert change and not change.updated
    await out.publish(new, change, False)
    assert (run / "db").read_bytes() == b'{"password": "y"}'
