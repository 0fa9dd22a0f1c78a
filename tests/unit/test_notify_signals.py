"""Notify targets: a pid file (stale, empty or naming the agent is "target missing"), a process
found by name in /proc (the topmost match only, never the agent or its ancestors)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent.outputs.notify.signals import PidFileTarget, ProcessTarget, protected_pids
from tests.support.builders import values_snapshot
from tests.support.child_apps import start_named_app, stop_app
from tests.support.waiting import wait_until

SECRET = "s3cret-notify-value"
VALUES = {"key": SECRET}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "pid_file not found"),
        ("", "does not hold a process id"),
        ("nginx\n", "does not hold a process id"),
        ("0\n", "does not hold a process id"),
        ("-1\n", "does not hold a process id"),
    ],
)
async def test_pid_file_without_a_usable_pid_is_target_missing(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    pid_file = tmp_path / "app.pid"
    if content is not None:
        pid_file.write_text(content)
    delivery = await PidFileTarget(pid_file).notify(signal.SIGHUP, values_snapshot(VALUES))
    assert delivery.outcome == "target_missing"
    assert reason in (delivery.reason or "")


async def test_pid_file_naming_the_agent_itself_is_refused(tmp_path: Path) -> None:
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(os.getpid()))
    delivery = await PidFileTarget(pid_file).notify(signal.SIGHUP, values_snapshot(VALUES))
    assert delivery.outcome == "target_missing"
    assert "agent itself" in (delivery.reason or "")


def test_process_target_matches_argv0_and_signals_only_the_topmost(tmp_path: Path) -> None:
    name = f"app-{uuid.uuid4().hex[:8]}"
    # A parent and its child under one name (like an nginx master and worker).
    worker_pid = tmp_path / "worker.pid"
    source = (
        "import subprocess, time\n"
        f"w = subprocess.Popen([{name!r}, '-c', 'import time; time.sleep(60)'],"
        f" executable={sys.executable!r})\n"
        f"open({str(worker_pid)!r}, 'w').write(str(w.pid))\n"
        "time.sleep(60)\n"
    )
    master = start_named_app(name, source)
    try:
        wait_until(lambda: worker_pid.exists() and worker_pid.read_text(), 10)
        worker = int(worker_pid.read_text())
        target = ProcessTarget(name)
        wait_until(lambda: worker in target._scan(), 10, what="worker visible in /proc")
        assert target.find() == [master.pid]
        assert worker not in target.find()
    finally:
        if worker_pid.exists():
            os.kill(int(worker_pid.read_text()), signal.SIGKILL)
        stop_app(master)


def test_process_target_matches_comm(tmp_path: Path) -> None:
    comm = f"c{uuid.uuid4().hex[:10]}"
    ready = tmp_path / "ready"
    source = (
        f"open('/proc/self/comm', 'w').write({comm!r})\n"
        f"open({str(ready)!r}, 'w').write('x')\n"
        "import time; time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", source])
    try:
        wait_until(ready.exists, 10)
        assert ProcessTarget(comm).find() == [proc.pid]
    finally:
        stop_app(proc)


def test_process_target_never_finds_the_agent_or_its_ancestors() -> None:
    own = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    parent = Path(f"/proc/{os.getppid()}/comm").read_text().strip()
    protected = protected_pids()
    assert {os.getpid(), os.getppid()} <= protected
    for name in {own, parent}:
        found = ProcessTarget(name).find()
        assert not set(found) & protected


async def test_process_target_with_no_match_is_target_missing() -> None:
    delivery = await ProcessTarget(f"absent-{uuid.uuid4().hex}").notify(
        signal.SIGHUP, values_snapshot(VALUES)
    )
    assert delivery.outcome == "target_missing"
