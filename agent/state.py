"""The agent's shared, observable state: the current snapshot and the health facts about it.

The refresher writes the snapshot and the refresh facts; the files output keeps its own
FilesStatus up to date; everything else only reads. Waiters (long-polls) are woken on every swap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.results import ParameterError
from agent.snapshot import Snapshot


@dataclass(slots=True)
class FilesStatus:
    """The files output's writes, kept up by that output and shown by /healthz.

    Only paths and OS reasons, never a value.
    """

    dir: str
    last_written: float | None = None  # unix time the last set was swapped in
    failing_since: float | None = None  # the first failed write of the current run of failures
    failures: int = 0  # failed writes in a row
    error: str | None = None  # why the last write failed

    @property
    def state(self) -> str:
        """`failing`, `ok` (the latest set is on disk) or `pending` (nothing written yet)."""
        if self.failures:
            return "failing"
        return "pending" if self.last_written is None else "ok"

    def record_written(self) -> None:
        self.last_written = time.time()
        self.failing_since = None
        self.failures = 0
        self.error = None

    def record_failed(self, reason: str) -> None:
        if not self.failures:
            self.failing_since = time.time()
        self.failures += 1
        self.error = reason


@dataclass(slots=True)
class FleetStatus:
    """Fleet mode as /healthz shows it (kept up by agent/fleet): role, Valkey, why."""

    name: str
    role: str = "starting"  # watcher, follower, polling (fell back to SSM), alone (no key)
    connected: bool = False
    reason: str | None = None
    records_applied: int = 0
    last_record: float | None = None  # unix time a record was last applied


@dataclass(frozen=True, slots=True)
class Health:
    ready: bool
    last_success: float | None  # unix time
    last_attempt: float | None
    last_error: str | None
    consecutive_failures: int
    parameter_errors: tuple[ParameterError, ...]
    files: FilesStatus | None = None  # a copy; None without [files]
    fleet: FleetStatus | None = None  # a copy; None without [fleet]


class AgentState:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.ready = False
        self.last_success: float | None = None
        self.last_attempt: float | None = None
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self.parameter_errors: tuple[ParameterError, ...] = ()
        #: The files output's status object (it writes it; the agent puts it here), or None.
        self.files: FilesStatus | None = None
        #: Fleet mode's status (agent/fleet keeps it up), or None without [fleet].
        self.fleet: FleetStatus | None = None
        # Set (and replaced by a fresh one) on every swap. An Event, not a Condition: waiters
        # hold no lock, so cancelling thousands of long-polls at once cannot deadlock.
        self._swapped = asyncio.Event()
        # Called synchronously on every swap, before any waiter or output sees the new snapshot.
        self.on_swap: list[Callable[[Snapshot], None]] = []

    def health(self) -> Health:
        return Health(
            self.ready,
            self.last_success,
            self.last_attempt,
            self.last_error,
            self.consecutive_failures,
            self.parameter_errors,
            None if self.files is None else dataclasses.replace(self.files),
            None if self.fleet is None else dataclasses.replace(self.fleet),
        )

    async def swap(self, snapshot: Snapshot) -> None:
        """Replace the snapshot in one step and wake every waiter."""
        self.snapshot = snapshot
        for listener in self.on_swap:
            listener(snapshot)
        swapped, self._swapped = self._swapped, asyncio.Event()
        swapped.set()

    async def wait_for_swap(self, seconds: float) -> bool:
        """True when a swap happened within `seconds`."""
        try:
            await asyncio.wait_for(self._swapped.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def record_success(self) -> None:
        self.last_success = self.last_attempt = time.time()
        self.last_error = None
        self.consecutive_failures = 0

    def record_failure(self, reason: str) -> None:
        self.last_attempt = time.time()
        self.last_error = reason
        self.consecutive_failures += 1
