"""agent/sources/parallel.py: results in order, the first failure as itself, a bound on calls."""

from __future__ import annotations

import asyncio

import pytest

from agent.results import SourceError
from agent.sources.parallel import CallGate, all_of


async def test_results_in_the_order_given() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert await all_of([after(0.03, 1), after(0.0, 2), after(0.01, 3)]) == [1, 2, 3]


async def test_first_failure_raised_as_itself_and_the_rest_cancelled() -> None:
    cancelled: list[str] = []

    async def fails() -> int:
        await asyncio.sleep(0)
        raise SourceError("throttled", throttled=True)

    async def slow(name: str) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return 0

    with pytest.raises(SourceError, match="throttled"):
        await all_of([slow("a"), fails(), slow("b")])
    assert sorted(cancelled) == ["a", "b"]


async def test_gate_holds_at_most_its_limit_in_flight() -> None:
    gate = CallGate(3)
    in_flight = peak = 0

    async def call() -> None:
        nonlocal in_flight, peak
        async with gate:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await all_of([call() for _ in range(10)])
    assert peak == 3


def test_gate_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        CallGate(0)
