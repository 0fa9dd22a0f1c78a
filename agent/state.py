"""The agent's shared, observable state: the current snapshot and the health facts about it.

Only the refresher writes it; outputs read it. Waiters (long-polls) are woken on every swap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.results import ParameterError
from agent.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Health:
    ready: bool
    last_success: float | None  # unix time
    last_attempt: float | None
    last_error: str | None
    consecutive_failures: int
    parameter_errors: tuple[ParameterError, ...]


class AgentState:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.ready = False
        self.last_success: float | None = None
        self.last_attempt: float | None = None
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self.parameter_errors: tuple[ParameterError, ...] = ()
        self._swapped = asyncio.Condition()
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
        )

    async def swap(self, snapshot: Snapshot) -> None:
        """Replace the snapshot in one step and wake every waiter."""
        self.snapshot = snapshot
        for listener in self.on_swap:
            listener(snapshot)
        async with self._swapped:
            self._swapped.notify_all()

    async def wait_for_swap(self, seconds: float) -> bool:
        """True when a swap happened within `seconds`."""
        async with self._swapped:
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
