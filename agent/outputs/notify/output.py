"""Tell the app that values changed: one signal per debounce window, then the optional command.

Published after the files output, so by the time the app hears anything the new values are both
served and written. Timing is a fixed trailing-edge window: the first change after a quiet spell
opens a window of `notify.debounce`; changes inside it are coalesced; when it closes the target
gets exactly one signal and then `command` runs. A change that arrives while the signal/command
is being delivered opens the next window. The waiting happens in a task owned by this output,
so the refresher never waits for the debounce or the command. `stop()` flushes: a pending change
is delivered at once (the files are already written and the app has not heard of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

import agent.tasks as tasks
from agent.config import NotifyConfig
from agent.metrics import Metrics
from agent.outputs.notify.commands import run_command
from agent.outputs.notify.signals import Delivery, PidFileTarget, ProcessTarget, Target
from agent.snapshot import Change, Snapshot

log = structlog.get_logger(__name__)


class NotifyOutput:
    def __init__(self, cfg: NotifyConfig, metrics: Metrics, target: Target | None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.target = target
        self.signal = signal.Signals[cfg.signal]
        self._latest: Snapshot | None = None
        self._changes = 0
        self._pending = asyncio.Event()
        self._flush = asyncio.Event()
        self._delivering = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = tasks.spawn(self._run(), "notify")

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        if first or not change:
            return
        self._latest = snapshot
        self._changes += 1
        self._pending.set()

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush.wait(), self.cfg.debounce)
            self._delivering = True
            try:
                await self._deliver()
            except Exception as exc:
                # Keep the task alive: the next change must still be told.
                log.error("notify_failed", reason=repr(exc))
            finally:
                self._delivering = False
            if self._flush.is_set() and not self._pending.is_set():
                return

    async def _deliver(self) -> None:
        snapshot, changes = self._latest, self._changes
        self._pending.clear()
        self._changes = 0
        assert snapshot is not None
        if self.target is not None:
            try:
                d = await self.target.notify(self.signal, snapshot)
            except Exception as exc:
                d = Delivery("failed", self.signal.name, (), repr(exc))
            self.metrics.signals_sent.labels(signal=d.signal, outcome=d.outcome).inc()
            fields = {
                "target": self.target.describe(),
                "signal": d.signal,
                "outcome": d.outcome,
                "pids": list(d.pids),
                "changes": changes,
            }
            if d.outcome in ("sent", "restart", "none"):
                log.info("notify_sent", **fields)
            elif d.outcome == "target_missing":
                log.warning("notify_target_missing", reason=d.reason, **fields)
            else:
                log.error("notify_failed", reason=d.reason, **fields)
        if self.cfg.command:
            await run_command(self.cfg.command, self.cfg.command_timeout, self.metrics)

    async def stop(self) -> None:
        """Deliver a pending change now (skipping the rest of the window), then end the task."""
        task, self._task = self._task, None
        if task is None:
            return
        tasks.release(task)  # asked to end: its return (or cancellation) is not a death
        self._flush.set()
        if not self._pending.is_set() and not self._delivering:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_notify(
    cfg: NotifyConfig, metrics: Metrics, exec_target: Target | None = None
) -> NotifyOutput | None:
    """The notify output for this config; None when there is nobody to tell."""
    target: Target | None = exec_target
    if exec_target is not None and (cfg.pid_file is not None or cfg.process is not None):
        log.warning(
            "notify_target_ignored",
            reason="exec mode: the child is the target; notify.pid_file/process are not used",
        )
    elif cfg.pid_file is not None:
        target = PidFileTarget(cfg.pid_file)
    elif cfg.process is not None:
        target = ProcessTarget(cfg.process)
    if target is None and not cfg.command:
        return None
    return NotifyOutput(cfg, metrics, target)
