"""Secrets are written beside parameters: files.dir/<key>, exact bytes (binary too)."""

from __future__ import annotations

from pathlib import Path

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.files.output import FilesOutput
from agent.snapshot import Snapshot
from tests.support.builders import parameter, secret, snapshot


async def test_secrets_written_by_key_with_exact_bytes(tmp_path: Path) -> None:
    out = FilesOutput(FilesConfig(dir=tmp_path / "run"), Metrics())
    param = parameter("/app/flag", "on")
    secrets = [
        secret("prod/db", '{"password": "x"}', key="db"),
        secret("prod/cert", None, key="certs/tls.der", binary=b"\x00\xff\x10raw"),
    ]
    snap = snapshot(param, *secrets)
    await out.publish(snap, Snapshot().diff(snap), True)
    run = tmp_path / "run"
    assert (run / "flag").read_bytes() == b"on"
    assert (run / "db").read_bytes() == b'{"password": "x"}'
    assert (run / "certs" / "tls.der").read_bytes() == b"\x00\xff\x10raw"
    assert not out.problems

    rotated = secret("prod/db", '{"password": "y"}', key="db", version_id="v2")
    new = snapshot(param, rotated, secrets[1], generation=2)
    change = snap.diff(new)
    assert change and not change.updated
    await out.publish(new, change, False)
    assert (run / "db").read_bytes() == b'{"password": "y"}'
