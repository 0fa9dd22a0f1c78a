"""Calls side by side, within a bound: the first load's fetch (issue #15).

`CallGate` is the one place every SSM call of a load passes through: it holds at most `limit`
calls in flight. A per-agent call-rate cap belongs here too (acquired in `__aenter__`), so that
parallel fetching can never exceed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


class CallGate:
    """At most `limit` calls in flight at once (`async with gate:` around each call)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)

    async def __aenter__(self) -> None:
        await self._slots.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()


async def all_of(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """The results in order; the first failure cancels the others and is raised as itself
    (not as an ExceptionGroup: callers sort SourceError from the rest as for one call)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
