"""The refresher with a scripted in-memory source (no network): merge, readiness, timing."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from agent.config import RefreshConfig
from agent.metrics import Metrics
from agent.refresher import Refresher
from agent.results import CycleResult, ParameterError, SourceError
from agent.snapshot import Change, Parameter, Snapshot
from agent.sources.base import LoadResult
from agent.state import AgentState
from tests.support.builders import parameter


class ScriptedSource:
    def __init__(self) -> None:
        self.next: Callable[[], LoadResult] = lambda: LoadResult({})

    async def load(self, previous: Snapshot) -> LoadResult:
        return self.next()

    async def fetch(self, name: str) -> Parameter | None:
        return None

    async def close(self) -> None:
        return None


def make(
    cfg: RefreshConfig | None = None,
) -> tuple[Refresher, ScriptedSource, list[tuple[Change, bool]]]:
    published: list[tuple[Change, bool]] = []

    async def publish(snapshot: Snapshot, change: Change, first: bool) -> None:
        published.append((change, first))

    source = ScriptedSource()
    refresher = Refresher(
        source, cfg or RefreshConfig(), AgentState(), Metrics(), publish, random.Random(1)
    )
    return refresher, source, published


def loaded(*params: Parameter, errors: tuple[ParameterError, ...] = ()) -> Callable[[], LoadResult]:
    return lambda: LoadResult({x.name: x for x in params}, errors)


async def test_first_complete_load_publishes_first_then_only_changes() -> None:
    r, source, published = make()
    source.next = loaded(parameter("/a"), parameter("/b"))
    await r.cycle()
    assert r.state.ready and published[-1][1] is True
    await r.cycle()
    assert len(published) == 1  # nothing changed: nothing published
    source.next = loaded(parameter("/a", version=2), parameter("/b"))
    await r.cycle()
    assert [c.name for c in published[-1][0].updated] == ["/a"] and published[-1][1] is False


async def test_failed_parameter_keeps_last_good_value() -> None:
    r, source, _ = make()
    source.next = loaded(parameter("/a"), parameter("/b"))
    await r.cycle()
    source.next = loaded(
        parameter("/a", version=2), errors=(ParameterError("/b", "AccessDeniedException", "no"),)
    )
    result = await r.cycle()
    assert result.complete
    b = r.state.snapshot.get("/b")
    assert b is not None and b.version == 1
    assert r.state.snapshot.get("/a") is not None and r.state.snapshot.get("/a").version == 2  # type: ignore[union-attr]


async def test_failed_path_keeps_everything_under_it() -> None:
    r, source, _ = make()
    source.next = loaded(parameter("/x/a"), parameter("/x/b"), parameter("/y"))
    await r.cycle()
    source.next = loaded(
        parameter("/y", version=2),
        errors=(ParameterError("/x", "AccessDeniedException", "no", is_path=True),),
    )
    await r.cycle()
    assert sorted(r.state.snapshot.parameters) == ["/x/a", "/x/b", "/y"]


async def test_source_failure_keeps_snapshot_and_counts_failures() -> None:
    r, source, _ = make()
    source.next = loaded(parameter("/a"))
    await r.cycle()
    before = r.state.snapshot

    def fail() -> LoadResult:
        raise SourceError("GetParametersByPath throttled", throttled=True)

    source.next = fail
    for n in (1, 2):
        result = await r.cycle()
        assert not result.ok and r.state.consecutive_failures == n
    assert r.state.snapshot is before and r.state.ready


async def test_missing_required_blocks_readiness_but_not_optional() -> None:
    r, source, published = make()
    source.next = loaded(
        parameter("/a"), errors=(ParameterError("/need", "ParameterNotFound", "x"),)
    )
    result = await r.cycle()
    assert not result.complete and not r.state.ready and published == []
    source.next = loaded(
        parameter("/a"), errors=(ParameterError("/opt", "ParameterNotFound", "x", required=False),)
    )
    assert (await r.cycle()).complete and r.state.ready


async def test_key_collision_keeps_the_served_one() -> None:
    r, source, _ = make()
    source.next = loaded(parameter("/a/db", key="db"))
    await r.cycle()
    source.next = loaded(parameter("/a/db", key="db"), parameter("/b/db", key="db"))
    result = await r.cycle()
    assert list(r.state.snapshot.parameters) == ["/a/db"]
    assert [(e.subject, e.code) for e in result.errors] == [("/b/db", "KeyCollision")]


def test_delays_interval_jitter_first_spread_and_backoff() -> None:
    cfg = RefreshConfig(interval=10, jitter=0.1, max_backoff=60)
    r, _, _ = make(cfg)
    ok = CycleResult(True, True, Change())
    failed = CycleResult(False, False, Change())
    firsts = [r.next_delay(ok, first_success=True) for _ in range(500)]
    assert 0 < min(firsts) < 1 and 9 < max(firsts) <= 10  # spread over one interval
    steady = [r.next_delay(ok, first_success=False) for _ in range(500)]
    assert 9 <= min(steady) < 9.2 and 10.8 < max(steady) <= 11
    ceilings = []
    for failures in (1, 2, 3, 4, 5):
        r.state.consecutive_failures = failures
        delays = [r.next_delay(failed, first_success=False) for _ in range(500)]
        ceilings.append(max(delays))
        assert min(delays) < 0.1 * max(delays)  # full jitter: from (almost) zero
    assert ceilings[0] == pytest.approx(20, rel=0.05)
    assert ceilings[1] == pytest.approx(40, rel=0.05)
    assert ceilings[2] == pytest.approx(60, rel=0.05) and ceilings[4] <= 60  # capped
