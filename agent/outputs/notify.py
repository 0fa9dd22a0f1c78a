"""Tell the app that values changed: one signal per debounce window, then the optional command.

Published after the files output, so by the time the app hears anything the new values are both
served and written. Timing is a fixed trailing-edge window: the first change after a quiet spell
opens a window of `notify.debounce`; changes inside it are coalesced; when it closes the target
gets exactly one signal and then `command` runs. A change that arrives while the signal/command
is being delivered opens the next window. The waiting happens in a task owned by this output,
so the refresher never waits for the debounce or the command. `stop()` flushes: a pending change
is delivered at once (the files are already written and the app has not heard of it).

The target is found again for every delivery (the app may have restarted with a new pid):
- `pid_file`: the first line of the file; a missing file or a dead pid is `target_missing`.
- `process`: every process in /proc whose comm (the kernel's 15-character name) or argv[0]
  basename equals the name, except the agent itself and its ancestors; of those, only the
  topmost ones get the signal (an nginx master, not its workers, which share its name).
- exec mode: the supervised child (see agent/supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from agent.children import Child, exit_code
from agent.config import NotifyConfig
from agent.metrics import Metrics
from agent.snapshot import Change, Snapshot

log = structlog.get_logger("agent.outputs.notify")

#: After `command_timeout`, the command's process group gets SIGTERM, then SIGKILL after this.
COMMAND_KILL_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened when the target was told. `outcome` is the metric's label:
    sent | target_missing | failed | restart | none."""

    outcome: str
    signal: str
    pids: tuple[int, ...] = ()
    reason: str | None = None


class Target(Protocol):
    def describe(self) -> str: ...

    async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery: ...


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1])


def protected_pids() -> set[int]:
    """The agent and all its ancestors: never a target found by name."""
    pids = {os.getpid()}
    pid = os.getppid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        stat = _stat(pid)
        pid = stat[1] if stat else 0
    return pids


def send_signal(pids: Sequence[int], sig: signal.Signals) -> Delivery:
    sent: list[int] = []
    missing = denied = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            missing += 1
        except PermissionError:
            denied += 1
        else:
            sent.append(pid)
    if sent:
        return Delivery("sent", sig.name, tuple(sent))
    if denied:
        return Delivery("failed", sig.name, tuple(pids), "permission denied")
    return Delivery("target_missing", sig.name, tuple(pids), "no such process")


class PidFileTarget:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"pid_file {self.path}"

    def find(self) -> tuple[int | None, str | None]:
        """(pid, None) or (None, why not)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None, "pid_file not found"
        except OSError as exc:
            return None, f"pid_file cannot be read: {exc.strerror}"
        first = text.strip().splitlines()[0].strip() if text.strip() else ""
        # Never 0 or negative: kill() would reach a whole process group, or every process.
        if not first.isdigit() or int(first) <= 0:
            return None, "pid_file does not hold a process id"
        pid = int(first)
        if pid == os.getpid():
            return None, "pid_file names the agent itself"
        return pid, None

    async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery:
        pid, reason = self.find()
        if pid is None:
            return Delivery("target_missing", sig.name, (), reason)
        delivery = send_signal([pid], sig)
        if delivery.outcome == "target_missing":
            return Delivery("target_missing", sig.name, (pid,), "stale pid_file: no such process")
        return delivery


class ProcessTarget:
    def __init__(self, name: str, proc: Path = Path("/proc")) -> None:
        self.name = name
        self.proc = proc

    def describe(self) -> str:
        return f"process {self.name}"

    def _scan(self) -> dict[int, int]:
        """pid -> ppid of every live process that answers to the name."""
        found: dict[int, int] = {}
        try:
            entries = list(self.proc.iterdir())
        except OSError:
            return found
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                comm = (entry / "comm").read_text().rstrip("\n")
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not argv[0]:  # kernel threads and zombies have no command line
                continue
            argv0 = os.path.basename(argv[0].decode(errors="replace"))
            if self.name not in (comm, argv0):
                continue
            stat = _stat(entry.name)
            if stat is not None and stat[0] != "Z":
                found[int(entry.name)] = stat[1]
        return found

    def find(self) -> list[int]:
        """The topmost matching processes, the agent and its ancestors excluded."""
        protected = protected_pids()
        matches = {pid: ppid for pid, ppid in self._scan().items() if pid not in protected}
        return sorted(pid for pid, ppid in matches.items() if ppid not in matches)

    async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery:
        pids = self.find()
        if not pids:
            return Delivery("target_missing", sig.name, (), f"no process named {self.name!r}")
        return send_signal(pids, sig)


async def run_command(argv: Sequence[str], limit: float, metrics: Metrics) -> int | None:
    """Run the command for at most `limit` seconds; its exit code, or None when it could not
    start or ran out of time.
    Its output goes where the agent's goes; the agent logs only the exit code."""
    started = time.monotonic()
    try:
        child = Child.spawn(argv, new_session=True, inherit_stdin=False)
    except OSError as exc:
        metrics.notify_commands.labels(outcome="failed").inc()
        log.error("notify_command_failed", command=argv[0], error=exc.strerror or repr(exc))
        return None
    try:
        returncode = await asyncio.wait_for(child.wait(), limit)
    except TimeoutError:
        await child.stop(COMMAND_KILL_GRACE, group=True)
        metrics.notify_commands.labels(outcome="timeout").inc()
        log.error("notify_command_timeout", command=argv[0], timeout=limit, pid=child.pid)
        return None
    except asyncio.CancelledError:
        child.signal_group(signal.SIGKILL)
        raise
    code = exit_code(returncode)
    outcome = "ok" if code == 0 else "failed"
    metrics.notify_commands.labels(outcome=outcome).inc()
    level = log.info if code == 0 else log.error
    level(
        "notify_command_done",
        command=argv[0],
        exit_code=code,
        seconds=round(time.monotonic() - started, 3),
    )
    return code


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
            self._task = asyncio.create_task(self._run(), name="notify")

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
