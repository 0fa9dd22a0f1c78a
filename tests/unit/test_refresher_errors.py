"""The refresher with a source that raises what no source should: the cycle fails, loop lives."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from structlog.testing import capture_logs

from agent.config import RefreshConfig
from agent.metrics import Metrics
from agent.refresher import Refresher
from agent.snapshot import Change, Parameter, Snapshot
from agent.sources.base import LoadResult
from agent.state import AgentState

T = datetime(2026, 1, 1, tzinfo=UTC)


class RaisingSource:
    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.params = {"/a": Parameter("/a", "a", "String", "secret-value-a", 1, T)}

    async def load(self, previous: Snapshot) -> LoadResult:
        if self.error is not None:
            raise self.error
        return LoadResult(self.params)

    async def fetch(self, name: str) -> Parameter | None:
        return None

    async def close(self) -> None:
        return None


def make() -> tuple[Refresher, RaisingSource]:
    async def publish(snapshot: Snapshot, change: Change, first: bool) -> None:
        return None

    source = RaisingSource()
    cfg = RefreshConfig(interval=10, max_backoff=600)
    return Refresher(source, cfg, AgentState(), Metrics(), publish, random.Random(3)), source


async def test_an_unexpected_exception_is_a_failed_cycle_that_backs_off() -> None:
    r, source = make()
    assert (await r.cycle()).complete
    source.error = TypeError("unsupported operand")
    with capture_logs() as logs:
        results = [await r.cycle() for _ in range(3)]
    assert all(not x.ok and not x.complete for x in results)
    assert r.state.consecutive_failures == 3
    assert r.metrics.refresh_errors.labels(kind="unexpected")._value.get() == 3
    assert r.state.last_error is not None and r.state.last_error.startswith("unexpected TypeError")
    assert len([e for e in logs if e["event"] == "refresh_unexpected_error"]) == 1
    # Backed off like a failed cycle: never later than the ceiling, and not the plain interval.
    for failures in (1, 2, 3):
        r.state.consecutive_failures = failures
        ceiling = min(600, 10 * 2**failures)
        delays = [r.next_delay(results[0], False) for _ in range(50)]
        assert max(delays) <= ceiling and min(delays) < 9, "full-jitter backoff, not the interval"


async def test_each_kind_of_exception_is_logged_once() -> None:
    r, source = make()
    with capture_logs() as logs:
        for error in (KeyError("Name"), KeyError("Name"), ValueError("x"), KeyError("Name")):
            source.error = error
            await r.cycle()
    crashes = [e["error"] for e in logs if e["event"] == "refresh_unexpected_error"]
    assert crashes == ["KeyError: 'Name'", "ValueError: x"]


async def test_health_never_holds_the_exception_text() -> None:
    """An exception's text may quote data; /healthz gets its type and place only."""
    r, source = make()
    source.error = ValueError("could not parse secret-value-a")
    await r.cycle()
    assert r.state.last_error is not None
    assert "secret-value-a" not in r.state.last_error and "ValueError" in r.state.last_error


async def test_cancellation_is_not_swallowed() -> None:
    import asyncio

    import pytest

    r, source = make()
    source.error = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await r.cycle()
