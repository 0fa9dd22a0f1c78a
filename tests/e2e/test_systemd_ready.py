"""The real `ssm-sidecar run` under a fake systemd: READY=1 only after the first complete load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.builders import write_atomic, write_file_source
from tests.support.systemd import FakeSystemd
from tests.support.waiting import wait_until

SECRETS = ("first-secret-value-1", "required-secret-value-2", "late-secret-value-3")


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    # tmp_path can exceed the 108 bytes of sun_path; /tmp keeps the socket path short.
    with tempfile.TemporaryDirectory(prefix="sd-", dir="/tmp") as d:
        yield Path(d)


def _values(**extra: str) -> str:
    lines = [f'"/app/first" = {{ value = "{SECRETS[0]}", type = "SecureString" }}']
    lines += [f'"{name}" = "{value}"' for name, value in extra.items()]
    return "\n".join(lines) + "\n"


def test_ready_after_first_complete_load_then_status_updates(
    tmp_path: Path, notify_dir: Path
) -> None:
    config = write_file_source(
        tmp_path,
        _values(),
        parameters=[{"path": "/app"}, {"name": "/shared/required", "alias": "required"}],
        refresh={"interval": "300ms", "max_backoff": "300ms"},
        log={"level": "debug"},
    )
    values = tmp_path / "values.toml"
    systemd = FakeSystemd(notify_dir / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_dir / "notify")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first load is incomplete (/shared/required is missing): systemd hears why, no READY.
        waiting = wait_until(
            lambda: [s for s in systemd.statuses() if s.startswith("waiting for the first")],
            15,
            what="a 'waiting' STATUS",
        )
        assert "/shared/required" in waiting[0]
        assert systemd.ready_indexes() == []

        write_atomic(values, _values(**{"/shared/required": SECRETS[1]}))
        index = wait_until(systemd.ready_indexes, 15, what="READY=1")[0]
        ready = systemd.messages[index]
        assert ready["STATUS"].startswith("serving 2 parameters; last refresh ")
        assert not any("READY" in m for m in systemd.messages[:index])

        # A later change reaches systemd as a STATUS update.
        write_atomic(values, _values(**{"/shared/required": SECRETS[1], "/app/late": SECRETS[2]}))
        wait_until(
            lambda: any(s.startswith("serving 3 parameters") for s in systemd.statuses()),
            15,
            what="STATUS with 3 parameters",
        )
        assert [m for m in systemd.drain() if "READY" in m] == [ready]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        systemd.drain()
        systemd.close()
    assert proc.returncode == 0, stderr
    assert systemd.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert '"systemd_ready_sent"' in stderr
    for secret in SECRETS:
        assert secret not in stderr
        assert all(secret not in str(m) for m in systemd.messages)
