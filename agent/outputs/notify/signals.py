"""The targets a change is told to, and how a signal reaches them.

The target is found again for every delivery (the app may have restarted with a new pid):
- `pid_file`: the first line of the file (a regular file only, read off the event loop); a
  missing file, anything but a regular file, or a dead pid is `target_missing`.
- `process`: every process in /proc whose comm (the kernel's 15-character name) or argv[0]
  basename equals the name, except the agent itself and its ancestors; of those, only the
  topmost ones get the signal (an nginx master, not its workers, which share its name).
- exec mode: the supervised child (see agent/supervisor.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.snapshot import Snapshot


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


# A pid is at most 7 digits (pid_max <= 2^22); a pid file is a line, not a document.
PID_FILE_MAX_BYTES = 4096
_MAX_PID_DIGITS = 10


def read_pid_file(path: Path) -> tuple[int | None, str | None]:
    """(pid, None) or (None, why not). Only a regular file (a symlink to one is followed), opened
    without blocking (a FIFO planted there can never hold the caller) and read up to
    PID_FILE_MAX_BYTES. Blocking file I/O: call it off the event loop."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "pid_file not found"
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            return None, "pid_file is not a regular file"
        return None, f"pid_file cannot be read: {exc.strerror}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "pid_file is not a regular file"
        data = os.read(fd, PID_FILE_MAX_BYTES)
    except OSError as exc:
        return None, f"pid_file cannot be read: {exc.strerror}"
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace").strip()
    first = text.splitlines()[0].strip() if text else ""
    # Never 0 or negative: kill() would reach a whole process group, or every process.
    if not (first.isascii() and first.isdigit()) or len(first) > _MAX_PID_DIGITS:
        return None, "pid_file does not hold a process id"
    pid = int(first)
    if pid <= 0:
        return None, "pid_file does not hold a process id"
    return pid, None


class PidFileTarget:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"pid_file {self.path}"

    def find(self) -> tuple[int | None, str | None]:
        """(pid, None) or (None, why not). Blocking: see read_pid_file."""
        pid, reason = read_pid_file(self.path)
        if pid is not None and pid == os.getpid():
            return None, "pid_file names the agent itself"
        return pid, reason

    async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery:
        pid, reason = await asyncio.to_thread(self.find)
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
