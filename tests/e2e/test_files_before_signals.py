"""Files before signals (issue 12, row 4): on a full tmpfs the new set cannot be written, so the
app is not told; /healthz says why; once space is freed the set is written and only then is the
app signalled, and whatever it reads on a signal is what the HTTP API serves."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import agent_config, ssm_source, write_config
from tests.support.child_apps import (
    HUP_READER,
    http_get,
    read_lines,
    stop_app,
    wait_for_line,
    write_app,
)
from tests.support.moto import free_port
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until

NAME = "/app/db/password"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own, so the test can fill it without touching anything else."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)]
    done = subprocess.run(mount, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); returns it (delete it to free space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        with contextlib.suppress(OSError):  # the last partial page, if any
            while os.write(fd, b"\0"):
                pass
    finally:
        os.close(fd)
    return filler


def health(base: str) -> dict[str, Any]:
    status, body = http_get(f"{base}/healthz")
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def write_errors(base: str) -> float:
    _, text = http_get(f"{base}/metrics")
    found = re.search(r'^ssm_sidecar_files_errors_total\{kind="write"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_app_is_signalled_only_once_its_file_holds_what_http_serves(
    tmp_path: Path, small_tmpfs: Path, ssm: Any, moto_url: str
) -> None:
    values = ["v1-d0c3a", "v2-77e1b", "v3-5fa90"]
    ssm.put_parameter(Name=NAME, Value=values[0], Type="SecureString")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    params = small_tmpfs / "params"
    config = write_config(
        tmp_path / "config.toml",
        agent_config(
            ssm_source(moto_url),
            refresh={"interval": "300ms", "jitter": 0.0, "max_backoff": "1s"},
            http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
            files={"dir": str(params)},
            notify={"pid_file": "app.pid", "debounce": "100ms"},
        ),
    )
    token = tmp_path / "token"
    url = f"{base}/v1/parameters{NAME}"
    log = tmp_path / "app.log"
    reader = write_app(tmp_path, HUP_READER, "reader.py")
    app: subprocess.Popen[bytes] | None = None
    with AgentProcess("run", "-c", str(config)) as agent:
        try:
            agent.wait_for_event("ready", timeout=30)
            argv = [str(log), str(params / "db" / "password"), url, str(token)]
            app = subprocess.Popen([sys.executable, str(reader), *argv])
            (tmp_path / "app.pid").write_text(f"{app.pid}\n")
            wait_for_line(log, f"{values[0]} {values[0]}")
            filler = fill(small_tmpfs)

            for value in values[1:]:
                failed_before = write_errors(base)
                ssm.put_parameter(Name=NAME, Value=value, Type="SecureString", Overwrite=True)

                def served(value: str = value) -> bool:
                    return http_get(url, token.read_text())[1] == value

                def retried(before: float = failed_before) -> bool:
                    # Still failing after the HTTP API took the value: written at least twice.
                    return write_errors(base) >= before + 2

                wait_until(served, 15, what=f"HTTP serves {value}")
                wait_until(retried, 15, what="the failed write retried")
            state = wait_until(
                lambda: health(base).get("files", {}).get("state") == "failing" and health(base),
                10,
                what="/healthz reports the failing write",
            )
            assert "No space left on device" in state["files"]["error"], state
            assert read_lines(log) == [f"{values[0]} {values[0]}"], "told of a set not on disk"
            assert (params / "db" / "password").read_text() == values[0]

            filler.unlink()
            wait_for_line(log, f"{values[2]} {values[2]}", timeout=15)
            assert health(base)["files"]["state"] == "ok"
        finally:
            if app is not None:
                stop_app(app)
    seen = [line.split() for line in read_lines(log)]
    assert all(from_file == from_http for from_file, from_http in seen), seen
    assert [v for v, _ in seen] == [values[0], values[2]], "one signal, after the write"
    for value in values:
        assert value not in agent.log_text(), "a value leaked into the agent's log"
