"""Child processes (exec mode's child, notify commands): exit codes, SIGTERM then SIGKILL, a clean
environment, and the PID-1 reaper that never takes a managed child's status."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.children import MANAGED, Child, exit_code, reap_orphans
from tests.support.child_apps import process_state
from tests.support.waiting import async_wait_until, wait_until


async def test_child_return_codes_map_to_shell_exit_codes() -> None:
    ok = Child.spawn(["sh", "-c", "exit 3"])
    assert await ok.wait() == 3
    killed = Child.spawn(["sleep", "30"])
    assert killed.send_signal(signal.SIGTERM)
    returncode = await killed.wait()
    assert returncode == -signal.SIGTERM
    assert exit_code(returncode) == 143
    assert not killed.send_signal(signal.SIGTERM), "a reaped child is not signalled"
    assert killed.pid not in MANAGED


async def test_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "trapped"
    child = Child.spawn(["sh", "-c", f"trap '' TERM; : > {ready}; while :; do sleep 0.05; done"])
    await async_wait_until(ready.exists, 10, what="trap installed")
    started = time.monotonic()
    returncode, killed = await child.stop(0.5)
    elapsed = time.monotonic() - started
    assert killed and returncode == -signal.SIGKILL
    assert 0.5 <= elapsed < 3


async def test_reaper_collects_orphans_but_never_a_managed_child() -> None:
    # Not started through Child: stands in for an orphan re-parented to a PID-1 agent.
    orphan = subprocess.Popen(["true"])
    managed = Child.spawn(["true"])
    # Blocking waits on purpose: the loop must not run the managed child's own waiter yet.
    wait_until(lambda: process_state(orphan.pid) == "Z" and process_state(managed.pid) == "Z", 10)
    reaped = reap_orphans()
    assert orphan.pid in reaped
    assert managed.pid not in reaped
    assert process_state(orphan.pid) is None
    assert await asyncio.wait_for(managed.wait(), 5) == 0
    orphan.returncode = 0  # reaped above; keep Popen from waiting on it again


async def test_children_never_inherit_the_agents_systemd_notify_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("KEEP_ME", "yes")
    out = tmp_path / "env.txt"
    code = "import os,sys; open(sys.argv[1],'w').write(' '.join(sorted(os.environ)))"
    child = Child.spawn([sys.executable, "-c", code, str(out)])
    assert await child.wait() == 0
    names = out.read_text().split()
    assert "KEEP_ME" in names
    assert "NOTIFY_SOCKET" not in names and "WATCHDOG_USEC" not in names
