"""The real `ssm-sidecar run` under a fake systemd: READY=1 only after the first complete load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

SECRETS = ("first-secret-value-1", "required-secret-value-2", "late-secret-value-3")


class FakeSystemd:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(f.split("=", 1) for f in data.decode().split("\n")))

    def statuses(self) -> list[str]:
        return [m["STATUS"] for m in self.drain() if "STATUS" in m]

    def ready_indexes(self) -> list[int]:
        return [i for i, m in enumerate(self.drain()) if m.get("READY") == "1"]


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    # tmp_path can exceed the 108 bytes of sun_path; /tmp keeps the socket path short.
    with tempfile.TemporaryDirectory(prefix="sd-", dir="/tmp") as d:
        yield Path(d)


def _values(path: Path, **extra: str) -> None:
    lines = [f'"/app/first" = {{ value = "{SECRETS[0]}", type = "SecureString" }}']
    lines += [f'"{name}" = "{value}"' for name, value in extra.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def test_ready_after_first_complete_load_then_status_updates(
    tmp_path: Path, notify_dir: Path
) -> None:
    values = tmp_path / "values.toml"
    _values(values)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[source]
type = "file"
path = "{values}"

[[parameters]]
path = "/app"

[[parameters]]
name = "/shared/required"
alias = "required"

[refresh]
interval = "300ms"
max_backoff = "300ms"

[http]
enabled = false

[log]
level = "debug"
"""
    )
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

        _values(values, **{"/shared/required": SECRETS[1]})
        index = wait_until(systemd.ready_indexes, 15, what="READY=1")[0]
        ready = systemd.messages[index]
        assert ready["STATUS"].startswith("serving 2 parameters; last refresh ")
        assert not any("READY" in m for m in systemd.messages[:index])

        # A later change reaches systemd as a STATUS update.
        _values(values, **{"/shared/required": SECRETS[1], "/app/late": SECRETS[2]})
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
        systemd.sock.close()
    assert proc.returncode == 0, stderr
    assert systemd.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert '"systemd_ready_sent"' in stderr
    for secret in SECRETS:
        assert secret not in stderr
        assert all(secret not in str(m) for m in systemd.messages)
