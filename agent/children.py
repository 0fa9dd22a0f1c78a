"""Child processes of the agent: start, wait, signal, stop; and the zombie reaper for PID 1.

Every subprocess the agent starts (the exec child, notify commands) goes through `Child`, so the
agent always knows which pids are its own. A child is started with `subprocess.Popen` and awaited
through a pidfd watched by the event loop (Linux >= 5.3), else by one waiter thread. Neither
asyncio's child watcher nor a SIGCHLD handler is involved: uvloop refuses SIGCHLD handlers, and a
`waitpid(-1)` loop would steal the exit status of the child we supervise. When the agent is PID 1,
`reap_orphans` collects zombies that are NOT in `MANAGED` (orphans re-parented to us), found by
scanning /proc, so the exit status of our own children is left to their waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

#: Pids whose exit status belongs to a `Child` waiter; the reaper never touches them.
MANAGED: set[int] = set()

REAP_INTERVAL = 1.0
UNKNOWN_RETURNCODE = 255


def exit_code(returncode: int) -> int:
    """A shell's view of a return code: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


# systemd's notify and watchdog variables address the agent (the unit's main process); a child
# that inherited them could send READY=1 or watchdog pings on the agent's behalf.
AGENT_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")


class Child:
    """One started subprocess. Signal it with `send_signal`, never through Popen (which reaps)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pidfd: int | None = None
        self._watch()

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        inherit_stdin: bool = True,
    ) -> Child:
        """Start `argv` (stdout/stderr shared with the agent); raises OSError when it cannot."""
        child_env = dict(os.environ if env is None else env)
        for name in AGENT_ONLY_ENV:
            child_env.pop(name, None)
        popen = subprocess.Popen(
            list(argv),
            env=child_env,
            stdin=None if inherit_stdin else subprocess.DEVNULL,
            start_new_session=new_session,
        )
        # Registered before the loop runs again, so the reaper cannot take it first.
        MANAGED.add(popen.pid)
        return cls(popen)

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None
        if self._pidfd is not None:
            loop.add_reader(self._pidfd, self._on_pidfd)
            return
        thread = threading.Thread(target=self._wait_in_thread, args=(loop,), daemon=True)
        thread.start()

    def _on_pidfd(self) -> None:
        assert self._pidfd is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        self._finish(self._reap())

    def _wait_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        returncode = self._reap()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._finish, returncode)

    def _reap(self) -> int:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            # Someone else collected it (code outside agent.children): the status is lost.
            log.warning("child_status_lost", pid=self.pid)
            return UNKNOWN_RETURNCODE
        return os.waitstatus_to_exitcode(status)

    def _finish(self, returncode: int) -> None:
        self.returncode = returncode
        # Tell Popen it is done, so it never waits on (or warns about) this pid again.
        self._popen.returncode = returncode
        MANAGED.discard(self.pid)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(returncode)

    @property
    def running(self) -> bool:
        return self.returncode is None

    async def wait(self) -> int:
        """The return code (negative -N when killed by signal N)."""
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> bool:
        """False when the child is already gone."""
        if not self.running:
            return False
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def signal_group(self, sig: int) -> None:
        """Signal the child's whole process group (for children started with new_session)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    async def stop(self, grace: float, *, group: bool = False) -> tuple[int, bool]:
        """SIGTERM, then SIGKILL after `grace` seconds. Returns (returncode, killed)."""
        send = self.signal_group if group else self.send_signal
        send(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), grace), False
        except TimeoutError:
            send(signal.SIGKILL)
            return await self.wait(), True


def _zombie_children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def reap_orphans() -> list[int]:
    """Collect zombie children that no `Child` waits for; returns their pids."""
    reaped = []
    for pid in _zombie_children(os.getpid()):
        if pid in MANAGED:
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    if reaped:
        log.debug("zombies_reaped", pids=reaped)
    return reaped


async def reap_forever(interval: float = REAP_INTERVAL) -> None:
    """For an agent that is PID 1 (a container's init): orphans end up as our children."""
    log.info("reaper_started", interval=interval)
    while True:
        reap_orphans()
        await asyncio.sleep(interval)
