"""OutputChain: a snapshot a serving output did not get is held back from every teller (and from
readiness) and retried until it is delivered; then the tellers hear of it once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agent.metrics import Metrics
from agent.outputs.base import NotDelivered
from agent.outputs.chain import OutputChain
from agent.snapshot import Change, Parameter, Snapshot
from tests.support.waiting import async_wait_until


def snapshot(generation: int, **values: tuple[str, int]) -> Snapshot:
    params = {
        f"/app/{key}": Parameter(
            name=f"/app/{key}",
            key=key,
            type="String",
            value=value,
            version=version,
            last_modified=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for key, (value, version) in values.items()
    }
    return Snapshot.build(params, generation)


class Files:
    """A serving output that fails (NotDelivered, or another error) while told to."""

    def __init__(self) -> None:
        self.failing: Exception | None = None
        self.got: list[tuple[Snapshot, bool]] = []
        self.on_disk: Snapshot | None = None

    async def start(self) -> None:
        return None

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        self.got.append((snapshot, first))
        if self.failing is not None:
            raise self.failing
        self.on_disk = snapshot

    async def stop(self) -> None:
        return None


class Teller:
    """Records what it is told and what the files held at that moment."""

    def __init__(self, files: Files, events: list[str]) -> None:
        self.files = files
        self.events = events
        self.told: list[tuple[Snapshot, Change, bool, Snapshot | None]] = []

    async def start(self) -> None:
        return None

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        self.events.append("told")
        self.told.append((snapshot, change, first, self.files.on_disk))

    async def stop(self) -> None:
        return None


def chain_of(retry_max: float = 0.05) -> tuple[OutputChain, Files, Teller, list[str], Metrics]:
    events: list[str] = []
    files = Files()
    teller = Teller(files, events)
    metrics = Metrics()
    chain = OutputChain(
        {"files": files, "notify": teller},
        metrics,
        lambda: events.append("served"),
        retry_max=retry_max,
    )
    return chain, files, teller, events, metrics


async def test_first_load_not_written_is_neither_ready_nor_told_until_the_retry_writes_it() -> None:
    chain, files, teller, events, _ = chain_of()
    await chain.start()
    files.failing = NotDelivered("No space left on device")
    s1 = snapshot(1, a=("one", 1))
    assert await chain.publish(s1, Snapshot().diff(s1), True) is False
    assert events == [] and chain.held
    await async_wait_until(lambda: len(files.got) >= 3, 5, what="retries while failing")
    assert events == [] and teller.told == []

    files.failing = None
    await async_wait_until(lambda: events, 5, what="released by the retry timer")
    assert events == ["served", "told"]
    assert teller.told == [(s1, teller.told[0][1], True, s1)]
    assert not chain.held
    await chain.stop()


async def test_changes_held_while_failing_reach_the_tellers_once_as_one_change() -> None:
    chain, files, teller, _, _ = chain_of(retry_max=3600)  # no timer: the next publish retries
    await chain.start()
    s1 = snapshot(1, a=("one", 1), b=("b", 1))
    assert await chain.publish(s1, Snapshot().diff(s1), True)
    files.failing = NotDelivered("disk full")
    s2 = snapshot(2, a=("two", 2), b=("b", 1))
    s3 = snapshot(3, a=("three", 3), b=("b", 1), c=("c", 1))
    assert await chain.publish(s2, s1.diff(s2), False) is False
    assert await chain.publish(s3, s2.diff(s3), False) is False
    assert len(teller.told) == 1

    files.failing = None
    s4 = snapshot(4, a=("three", 3), b=("b2", 2), c=("c", 1))
    assert await chain.publish(s4, s3.diff(s4), False)
    snap, change, first, on_disk = teller.told[-1]
    assert (snap, first, on_disk) == (s4, False, s4)
    # Everything since what the tellers last heard of (s1), not just the last cycle's change.
    assert change == s1.diff(s4)
    assert {c.name for c in change.updated} == {"/app/a", "/app/b"}
    assert [c.name for c in change.added] == ["/app/c"]
    await chain.stop()


async def test_every_teller_publish_finds_the_snapshot_on_disk() -> None:
    chain, files, teller, _, _ = chain_of()
    await chain.start()
    previous = Snapshot()
    for n in range(1, 9):
        files.failing = NotDelivered("flaky") if n % 3 == 0 else None
        current = snapshot(n, a=(f"v{n}", n))
        await chain.publish(current, previous.diff(current), n == 1)
        previous = current
    files.failing = None
    await async_wait_until(lambda: not chain.held, 5)
    assert teller.told, "told at all"
    assert all(snap is on_disk for snap, _, _, on_disk in teller.told)
    await chain.stop()


async def test_an_unexpected_error_in_a_serving_output_also_holds_and_is_counted() -> None:
    chain, files, _, events, metrics = chain_of()
    files.failing = RuntimeError("bug")
    s1 = snapshot(1, a=("one", 1))
    assert await chain.publish(s1, Snapshot().diff(s1), True) is False
    assert events == []
    failures = metrics.registry.get_sample_value(
        "ssm_sidecar_output_failures_total", {"output": "files"}
    )
    assert failures == 1


async def test_a_chain_never_started_holds_without_a_timer() -> None:
    """`ssm-sidecar once` never starts its outputs: nothing may linger after it."""
    chain, files, _, events, _ = chain_of()
    files.failing = NotDelivered("disk full")
    s1 = snapshot(1, a=("one", 1))
    assert await chain.publish(s1, Snapshot().diff(s1), True) is False
    await asyncio.sleep(0.2)
    assert len(files.got) == 1 and events == []


async def test_a_replaced_files_output_that_cannot_write_holds_the_tellers() -> None:
    chain, _, teller, _, _ = chain_of()
    await chain.start()
    s1 = snapshot(1, a=("one", 1))
    await chain.publish(s1, Snapshot().diff(s1), True)
    new = Files()
    new.failing = NotDelivered("refused")
    await chain.replace("files", new, s1)
    assert chain.held
    teller.files = new
    s2 = snapshot(2, a=("two", 2))
    assert await chain.publish(s2, s1.diff(s2), False) is False
    assert len(teller.told) == 1
    new.failing = None
    await async_wait_until(lambda: len(teller.told) == 2, 5, what="released")
    assert teller.told[-1][0] is s2 and teller.told[-1][3] is s2
    await chain.stop()


async def test_stop_ends_the_retry_timer() -> None:
    chain, files, _, _, _ = chain_of()
    await chain.start()
    files.failing = NotDelivered("disk full")
    s1 = snapshot(1, a=("one", 1))
    await chain.publish(s1, Snapshot().diff(s1), True)
    await chain.stop()
    tried = len(files.got)
    await asyncio.sleep(0.2)
    assert len(files.got) == tried
