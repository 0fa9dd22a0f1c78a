"""NotifyOutput: one signal per debounce window after the files, then the command; targets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.config import NotifyConfig
from agent.metrics import Metrics
from agent.outputs.notify.commands import run_command
from agent.outputs.notify.output import NotifyOutput, build_notify
from agent.outputs.notify.signals import Delivery, PidFileTarget, ProcessTarget, protected_pids
from agent.snapshot import Change, Parameter, Snapshot, VersionChange
from tests.support.child_apps import (
    SIGNAL_RECORDER,
    count_prefix,
    read_lines,
    start_named_app,
    stop_app,
    wait_for_line,
    write_app,
)
from tests.support.waiting import async_wait_until, wait_until

SECRET = "s3cret-notify-value"


def _snapshot(version: int) -> Snapshot:
    p = Parameter("/app/key", "key", "SecureString", SECRET, version, datetime.now(UTC), "arn:x")
    return Snapshot.build({p.name: p}, version)


def _change(version: int) -> Change:
    return Change(updated=(VersionChange("/app/key", version - 1, version),))


class Recorder:
    """A target that remembers each delivery and when it came."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, signal.Signals, int]] = []

    def describe(self) -> str:
        return "recorder"

    async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery:
        self.calls.append((time.monotonic(), sig, snapshot.generation))
        return Delivery("sent", sig.name, (1234,))


def _sent(metrics: Metrics, sig: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "ssm_sidecar_signals_sent_total", {"signal": sig, "outcome": outcome}
    )
    return value or 0.0


async def test_ten_changes_in_one_window_give_one_signal_at_its_end() -> None:
    target = Recorder()
    out = NotifyOutput(NotifyConfig(debounce=0.4), Metrics(), target)
    await out.start()
    try:
        opened = time.monotonic()
        for v in range(2, 12):
            await out.publish(_snapshot(v), _change(v), False)
        await async_wait_until(lambda: target.calls, 5, what="first signal")
        at, sig, generation = target.calls[0]
        assert sig == signal.SIGHUP
        assert generation == 11, "the signal carries the newest snapshot"
        assert at - opened >= 0.4, "trailing edge: sent when the window closes"
        # One more change opens a second window; had the first sent twice we would see 3.
        await out.publish(_snapshot(12), _change(12), False)
        await async_wait_until(lambda: len(target.calls) >= 2, 5, what="second signal")
        assert len(target.calls) == 2
    finally:
        await out.stop()
    assert len(target.calls) == 2


async def test_first_load_and_empty_changes_send_nothing() -> None:
    target = Recorder()
    metrics = Metrics()
    out = NotifyOutput(NotifyConfig(debounce=0.05), metrics, target)
    await out.start()
    await out.publish(_snapshot(1), Change(), True)
    await out.publish(_snapshot(1), _change(1), True)  # first=True never signals
    await out.publish(_snapshot(1), Change(), False)
    await out.publish(_snapshot(2), _change(2), False)
    await async_wait_until(lambda: target.calls, 5)
    await out.stop()
    assert [g for _, _, g in target.calls] == [2]
    assert _sent(metrics, "SIGHUP", "sent") == 1


async def test_stop_flushes_a_pending_change_without_waiting_for_the_window() -> None:
    target = Recorder()
    out = NotifyOutput(NotifyConfig(debounce=60), Metrics(), target)
    await out.start()
    await out.publish(_snapshot(2), _change(2), False)
    started = time.monotonic()
    await asyncio.wait_for(out.stop(), 5)
    assert len(target.calls) == 1
    assert time.monotonic() - started < 5


async def test_stop_with_nothing_pending_sends_nothing() -> None:
    target = Recorder()
    out = NotifyOutput(NotifyConfig(debounce=60), Metrics(), target)
    await out.start()
    await asyncio.wait_for(out.stop(), 5)
    assert target.calls == []


async def test_publish_never_waits_for_the_window_or_a_running_command() -> None:
    target = Recorder()
    cfg = NotifyConfig(debounce=0.2, command=("sleep", "30"), command_timeout=0.5)
    out = NotifyOutput(cfg, Metrics(), target)
    await out.start()
    started = time.monotonic()
    await out.publish(_snapshot(2), _change(2), False)
    assert time.monotonic() - started < 0.1  # inside the window
    await async_wait_until(lambda: target.calls, 5)
    started = time.monotonic()
    await out.publish(_snapshot(3), _change(3), False)  # while the command runs
    assert time.monotonic() - started < 0.1
    await out.stop()  # the command times out; the pending change is then flushed
    assert [g for _, _, g in target.calls] == [2, 3]


def _app(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "app.log"
    script = write_app(tmp_path, SIGNAL_RECORDER)
    proc = subprocess.Popen([sys.executable, str(script), str(log)])
    wait_for_line(log, f"ready {proc.pid}")
    return proc, log


async def test_pid_file_target_gets_the_signal(tmp_path: Path) -> None:
    proc, log = _app(tmp_path)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{proc.pid}\n")
        metrics = Metrics()
        out = build_notify(NotifyConfig(pid_file=pid_file, debounce=0.05), metrics)
        assert isinstance(out, NotifyOutput) and isinstance(out.target, PidFileTarget)
        await out.start()
        await out.publish(_snapshot(2), _change(2), False)
        await async_wait_until(lambda: count_prefix(log, "SIGHUP 1"), 10)
        await out.stop()
        assert count_prefix(log, "SIGHUP") == 1
        assert _sent(metrics, "SIGHUP", "sent") == 1
    finally:
        stop_app(proc)


async def test_the_command_runs_after_the_signal(tmp_path: Path) -> None:
    trail = tmp_path / "trail"

    class Noting(Recorder):
        async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery:
            with trail.open("a") as f:
                f.write("signal\n")
            return await super().notify(sig, snapshot)

    cfg = NotifyConfig(command=("sh", "-c", f"echo command >> {trail}"), debounce=0.05)
    metrics = Metrics()
    out = NotifyOutput(cfg, metrics, Noting())
    await out.start()
    await out.publish(_snapshot(2), _change(2), False)
    await async_wait_until(lambda: "command" in read_lines(trail), 10)
    await out.stop()
    assert read_lines(trail) == ["signal", "command"]
    assert metrics.registry.get_sample_value("ssm_sidecar_notify_commands_total", {"outcome": "ok"})


async def test_custom_signal_is_the_one_sent(tmp_path: Path) -> None:
    proc, log = _app(tmp_path)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(str(proc.pid))
        out = build_notify(NotifyConfig(pid_file=pid_file, signal="USR2", debounce=0), Metrics())
        assert out is not None
        await out.start()
        await out.publish(_snapshot(2), _change(2), False)
        await async_wait_until(lambda: count_prefix(log, "SIGUSR2 1"), 10)
        await out.stop()
        assert count_prefix(log, "SIGHUP") == 0
    finally:
        stop_app(proc)


async def test_stale_pid_file_is_logged_counted_and_the_output_goes_on(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{gone.pid}\n")
    metrics = Metrics()
    out = build_notify(NotifyConfig(pid_file=pid_file, debounce=0), metrics)
    assert out is not None
    await out.start()
    with capture_logs() as logs:
        await out.publish(_snapshot(2), _change(2), False)
        await async_wait_until(lambda: _sent(metrics, "SIGHUP", "target_missing") == 1, 5)
        # The next change, once the app is back, is delivered.
        proc, log = _app(tmp_path)
        try:
            pid_file.write_text(f"{proc.pid}\n")
            await out.publish(_snapshot(3), _change(3), False)
            await async_wait_until(lambda: count_prefix(log, "SIGHUP 1"), 10)
        finally:
            stop_app(proc)
    await out.stop()
    missing = [e for e in logs if e["event"] == "notify_target_missing"]
    assert len(missing) == 1
    assert "stale pid_file" in missing[0]["reason"]
    assert missing[0]["pids"] == [gone.pid]
    assert SECRET not in repr(logs)


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
    delivery = await PidFileTarget(pid_file).notify(signal.SIGHUP, _snapshot(1))
    assert delivery.outcome == "target_missing"
    assert reason in (delivery.reason or "")


async def test_pid_file_naming_the_agent_itself_is_refused(tmp_path: Path) -> None:
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(os.getpid()))
    delivery = await PidFileTarget(pid_file).notify(signal.SIGHUP, _snapshot(1))
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
    delivery = await ProcessTarget(f"absent-{uuid.uuid4().hex}").notify(signal.SIGHUP, _snapshot(1))
    assert delivery.outcome == "target_missing"


async def test_command_that_hangs_is_killed_after_its_timeout(tmp_path: Path) -> None:
    metrics = Metrics()
    started = time.monotonic()
    code = await run_command(["sleep", "30"], 0.3, metrics)
    assert code is None
    assert time.monotonic() - started < 5
    assert metrics.registry.get_sample_value(
        "ssm_sidecar_notify_commands_total", {"outcome": "timeout"}
    )


async def test_command_exit_code_and_a_missing_command_are_reported() -> None:
    metrics = Metrics()
    with capture_logs() as logs:
        assert await run_command(["sh", "-c", "exit 3"], 5, metrics) == 3
        assert await run_command([f"/nonexistent/{uuid.uuid4().hex}"], 5, metrics) is None
    events = {e["event"]: e for e in logs}
    assert events["notify_command_done"]["exit_code"] == 3
    assert "notify_command_failed" in events
    assert (
        metrics.registry.get_sample_value(
            "ssm_sidecar_notify_commands_total", {"outcome": "failed"}
        )
        == 2
    )


def test_nothing_to_tell_builds_no_output() -> None:
    assert build_notify(NotifyConfig(), Metrics()) is None
    only_command = build_notify(NotifyConfig(command=("true",)), Metrics())
    assert only_command is not None and only_command.target is None
