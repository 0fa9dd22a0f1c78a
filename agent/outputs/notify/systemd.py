"""systemd's notify protocol (sd_notify) without libsystemd: each message is one datagram.

READY=1 goes out once, after the first complete load. This output is published last, so by then
the values are served and written, and a unit ordered `After=` this one starts with them in place.
STATUS= lines tell `systemctl status` what is served and how fresh it is; STOPPING=1 goes out on
stop; WATCHDOG=1 keep-alives go out when the unit sets `WatchdogSec=`, so a wedged event loop
gets the service restarted. Nothing here ever carries a parameter value.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import structlog

import agent.tasks as tasks
from agent.snapshot import Change, Snapshot
from agent.state import AgentState

log = structlog.get_logger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
MAX_STATUS_LENGTH = 400
MAX_STATUS_PERIOD = 5.0
MIN_STATUS_PERIOD = 0.05

Address = str | bytes


def notify_address(value: str) -> Address:
    """The socket address in $NOTIFY_SOCKET: a path, or `@name` in the abstract namespace."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(f"{NOTIFY_SOCKET}={value!r}: expected an absolute path or @name")


class NotifySocket:
    """Sends `KEY=VALUE` lines to systemd; a failure is logged, never raised."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failing = False

    def send(self, *fields: str) -> bool:
        message = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            # Log the first failure of a run of them, not one line per status tick.
            if not self._failing:
                log.warning(
                    "systemd_notify_failed",
                    fields=[f.partition("=")[0] for f in fields],
                    error=exc.strerror or repr(exc),
                )
            self._failing = True
            return False
        if self._failing:
            log.info("systemd_notify_recovered")
        self._failing = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_STATUS_LENGTH:
        flat = flat[: MAX_STATUS_LENGTH - 3] + "..."
    return flat


def describe(state: AgentState) -> str:
    """One line for STATUS=: what is served and how fresh it is (names and counts only)."""
    served = len(state.snapshot)
    noun = "parameter" if served == 1 else "parameters"
    if not state.ready:
        if state.last_attempt is None:
            return "starting: loading parameters"
        return _one_line(f"waiting for the first complete load: {state.last_error or 'loading'}")
    if state.consecutive_failures:
        since = _utc(state.last_success) if state.last_success else "never"
        return _one_line(
            f"serving {served} {noun} (last known good since {since}); "
            f"refresh failing ({state.consecutive_failures} in a row): {state.last_error}"
        )
    text = f"serving {served} {noun}"
    if state.last_success is not None:
        text += f"; last refresh {_utc(state.last_success)}"
    failing = len(state.parameter_errors)
    if failing:
        text += f"; {failing} failing (last good value kept)"
    return _one_line(text)


class SystemdNotifier:
    """An Output: READY=1 after the first complete load, then STATUS= updates, STOPPING=1.

    Silent until started: `ssm-sidecar once` (which never starts its outputs) says nothing to
    systemd, whose oneshot units would only log the messages as unwanted.
    """

    def __init__(
        self,
        sock: NotifySocket,
        state: AgentState,
        status_period: float,
        watchdog_period: float | None = None,
        describe_state: Callable[[AgentState], str] = describe,
    ) -> None:
        self.sock = sock
        self.state = state
        self.status_period = min(MAX_STATUS_PERIOD, max(MIN_STATUS_PERIOD, status_period))
        self.watchdog_period = watchdog_period
        self._describe = describe_state
        self._ready_sent = False
        self._last_status: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False

    def _status(self) -> str:
        text = self._describe(self.state)
        self._last_status = text
        return "STATUS=" + text

    async def start(self) -> None:
        self._started = True
        self.sock.send(self._status())
        self._task = tasks.spawn(self._loop(), "systemd-notify")

    async def _loop(self) -> None:
        """Status on every change of it; watchdog keep-alives at half the unit's WatchdogSec."""
        period = self.status_period
        if self.watchdog_period is not None:
            period = min(period, self.watchdog_period)
        next_watchdog = time.monotonic()
        while True:
            now = time.monotonic()
            if self.watchdog_period is not None and now >= next_watchdog:
                self.sock.send("WATCHDOG=1")
                next_watchdog = now + self.watchdog_period
            try:
                if self._describe(self.state) != self._last_status:
                    self.sock.send(self._status())
            except Exception as exc:  # a status bug must not silence the watchdog
                log.error("systemd_status_failed", error=repr(exc))
            await asyncio.sleep(period)

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        if not self._started:
            return
        if first and not self._ready_sent:
            self._ready_sent = self.sock.send("READY=1", self._status())
            if self._ready_sent:
                log.info("systemd_ready_sent", parameters=len(snapshot))
            return
        self.sock.send(self._status())

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._task is not None:
            await tasks.cancel(self._task)
            self._task = None
        self.sock.send("STOPPING=1", "STATUS=stopping")
        self.sock.close()


def watchdog_period(environ: Mapping[str, str]) -> float | None:
    """Half of $WATCHDOG_USEC, when the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


def systemd_notifier_from_env(
    state: AgentState, refresh_interval: float, environ: Mapping[str, str] | None = None
) -> SystemdNotifier | None:
    """The notifier when $NOTIFY_SOCKET is set (run by systemd with Type=notify), else None."""
    env = os.environ if environ is None else environ
    value = env.get(NOTIFY_SOCKET, "")
    if not value:
        return None
    try:
        address = notify_address(value)
    except ValueError as exc:
        log.warning("systemd_notify_unsupported", reason=str(exc))
        return None
    return SystemdNotifier(NotifySocket(address), state, refresh_interval, watchdog_period(env))
