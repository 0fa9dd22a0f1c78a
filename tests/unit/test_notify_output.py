"""NotifyOutput: one signal per debounce window after the files, then the command."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from structlog.testing import capture_logs

from agent.config import NotifyConfig
from agent.metrics import Metrics
from agent.outputs.notify.output import NotifyOutput, build_notify
from agent.outputs.notify.signals import Delivery, PidFileTarget
from agent.snapshot import Change, Snapshot, VersionChange
from tests.support.builders import values_snapshot
from tests.support.child_apps import count_prefix, read_lines, start_recorder, stop_app
from tests.support.waiting import async_wait_until

SECRET = "s3cret-notify-value"
VALUES = {"key": SECRET}


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
            await out.publish(values_snapshot(VALUES, generation=v), _change(v), False)
        await async_wait_until(lambda: target.calls, 5, what="first signal")
        at, sig, generation = target.calls[0]
        assert sig == signal.SIGHUP
        assert generation == 11, "the signal carries the newest snapshot"
        assert at - opened >= 0.4, "trailing edge: sent when the window closes"
        # One more change opens a second window; had the first sent twice we would see 3.
        await out.publish(values_snapshot(VALUES, generation=12), _change(12), False)
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
    await out.publish(values_snapshot(VALUES), Change(), True)
    await out.publish(values_snapshot(VALUES), _change(1), True)  # first=True never signals
    await out.publish(values_snapshot(VALUES), Change(), False)
    await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
    await async_wait_until(lambda: target.calls, 5)
    await out.stop()
    assert [g for _, _, g in target.calls] == [2]
    assert _sent(metrics, "SIGHUP", "sent") == 1


async def test_stop_flushes_a_pending_change_without_waiting_for_the_window() -> None:
    target = Recorder()
    out = NotifyOutput(NotifyConfig(debounce=60), Metrics(), target)
    await out.start()
    await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
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
    await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
    assert time.monotonic() - started < 0.1  # inside the window
    await async_wait_until(lambda: target.calls, 5)
    started = time.monotonic()
    await out.publish(
        values_snapshot(VALUES, generation=3), _change(3), False
    )  # while the command runs
    assert time.monotonic() - started < 0.1
    await out.stop()  # the command times out; the pending change is then flushed
    assert [g for _, _, g in target.calls] == [2, 3]


async def test_pid_file_target_gets_the_signal(tmp_path: Path) -> None:
    proc, log = start_recorder(tmp_path)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{proc.pid}\n")
        metrics = Metrics()
        out = build_notify(NotifyConfig(pid_file=pid_file, debounce=0.05), metrics)
        assert isinstance(out, NotifyOutput) and isinstance(out.target, PidFileTarget)
        await out.start()
        await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
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
    await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
    await async_wait_until(lambda: "command" in read_lines(trail), 10)
    await out.stop()
    assert read_lines(trail) == ["signal", "command"]
    assert metrics.registry.get_sample_value("ssm_sidecar_notify_commands_total", {"outcome": "ok"})


async def test_custom_signal_is_the_one_sent(tmp_path: Path) -> None:
    proc, log = start_recorder(tmp_path)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(str(proc.pid))
        out = build_notify(NotifyConfig(pid_file=pid_file, signal="USR2", debounce=0), Metrics())
        assert out is not None
        await out.start()
        await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
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
        await out.publish(values_snapshot(VALUES, generation=2), _change(2), False)
        await async_wait_until(lambda: _sent(metrics, "SIGHUP", "target_missing") == 1, 5)
        # The next change, once the app is back, is delivered.
        proc, log = start_recorder(tmp_path)
        try:
            pid_file.write_text(f"{proc.pid}\n")
            await out.publish(values_snapshot(VALUES, generation=3), _change(3), False)
            await async_wait_until(lambda: count_prefix(log, "SIGHUP 1"), 10)
        finally:
            stop_app(proc)
    await out.stop()
    missing = [e for e in logs if e["event"] == "notify_target_missing"]
    assert len(missing) == 1
    assert "stale pid_file" in missing[0]["reason"]
    assert missing[0]["pids"] == [gone.pid]
    assert SECRET not in repr(logs)


def test_nothing_to_tell_builds_no_output() -> None:
    assert build_notify(NotifyConfig(), Metrics()) is None
    only_command = build_notify(NotifyConfig(command=("true",)), Metrics())
    assert only_command is not None and only_command.target is None
