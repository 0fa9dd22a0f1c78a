"""The on-demand cache: prefixes, one interval of caching, one source call per name at a time."""

from __future__ import annotations

import asyncio

import pytest

from agent.outputs.http.ondemand import OnDemandCache, under_prefixes
from agent.results import SourceError
from agent.snapshot import Parameter
from tests.support.builders import parameter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.version = 1

    async def fetch(self, name: str) -> Parameter | None:
        self.calls.append(name)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise SourceError("GetParameter throttled")
        if "missing" in name:
            return None
        return parameter(name, version=self.version)


def make(ttl: float = 30.0, max_entries: int = 100) -> tuple[OnDemandCache, Source, Clock]:
    source, clock = Source(), Clock()
    cache = OnDemandCache(
        source.fetch, ["/dyn", "/other/"], ttl, clock=clock, max_entries=max_entries
    )
    return cache, source, clock


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("/dyn/a", True),
        ("/dyn/a/b:3", True),
        ("/other/x:label", True),
        ("/dyn", False),
        ("/dynamo/a", False),
        ("/app/a", False),
        ("arn:aws:ssm:us-east-1:1:parameter/dyn/a", False),
    ],
)
def test_covers_names_under_the_prefixes_only(name: str, covered: bool) -> None:
    assert under_prefixes(name, ["/dyn", "/other/"]) is covered


async def test_names_outside_the_prefixes_never_reach_the_source() -> None:
    cache, source, _ = make()
    assert await cache.get("/app/secret") is None
    assert source.calls == []


async def test_an_answer_is_kept_for_one_interval() -> None:
    cache, source, clock = make(ttl=30)
    first = await cache.get("/dyn/a")
    assert first is not None and first.version == 1
    source.version = 2
    clock.now += 29.9
    cached = await cache.get("/dyn/a")
    assert cached is not None and cached.version == 1
    assert source.calls == ["/dyn/a"]
    clock.now += 0.2
    fresh = await cache.get("/dyn/a")
    assert fresh is not None and fresh.version == 2
    assert source.calls == ["/dyn/a", "/dyn/a"]


async def test_not_found_is_cached_too_but_failures_are_not() -> None:
    cache, source, _ = make()
    assert await cache.get("/dyn/missing") is None
    assert await cache.get("/dyn/missing") is None
    assert source.calls == ["/dyn/missing"]
    source.fail = True
    for _ in range(2):
        with pytest.raises(SourceError):
            await cache.get("/dyn/b")
    assert source.calls.count("/dyn/b") == 2


async def test_concurrent_misses_make_one_call() -> None:
    cache, source, _ = make()
    source.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get("/dyn/a")) for _ in range(20)]
    other = asyncio.create_task(cache.get("/dyn/b"))
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*waiters, other)
    assert source.calls.count("/dyn/a") == 1
    assert source.calls.count("/dyn/b") == 1
    assert {r.name for r in results if r is not None} == {"/dyn/a", "/dyn/b"}


async def test_one_caller_giving_up_does_not_cancel_the_others() -> None:
    cache, source, _ = make()
    source.gate = asyncio.Event()
    quitter = asyncio.create_task(cache.get("/dyn/a"))
    stayer = asyncio.create_task(cache.get("/dyn/a"))
    await asyncio.sleep(0)
    quitter.cancel()
    source.gate.set()
    found = await stayer
    assert found is not None and found.name == "/dyn/a"
    assert source.calls == ["/dyn/a"]


async def test_the_cache_is_bounded() -> None:
    cache, _, clock = make(ttl=30, max_entries=3)
    for i in range(5):
        clock.now += 1
        await cache.get(f"/dyn/{i}")
    assert len(cache) == 3
