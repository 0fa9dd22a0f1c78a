"""OutputChain: publish order declared once (SLOTS), readiness between serving and telling, an
output replaced on reload, stopped in reverse; a teller's failure never stops the others; a
snapshot a serving output did not get is held back from every teller (and from readiness) and
retried until it is delivered, then the tellers hear of it once."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from agent.metrics import Metrics
from agent.outputs.base import NotDelivered, Output
from agent.outputs.chain import SERVING, SLOTS, OutputChain, Slot
from agent.snapshot import Change, Snapshot, VersionChange
from tests.support.builders import parameter, snapshot, values_snapshot
from tests.support.waiting import async_wait_until


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
    s1 = values_snapshot({"a": "one"})
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
    s1 = values_snapshot({"a": "one", "b": "b"})
    assert await chain.publish(s1, Snapshot().diff(s1), True)
    files.failing = NotDelivered("disk full")
    s2 = snapshot(parameter("/app/a", "two", version=2), parameter("/app/b", "b"), generation=2)
    s3 = snapshot(
        parameter("/app/a", "three", version=3),
        parameter("/app/b", "b"),
        parameter("/app/c", "c"),
        generation=3,
    )
    assert await chain.publish(s2, s1.diff(s2), False) is False
    assert await chain.publish(s3, s2.diff(s3), False) is False
    assert len(teller.told) == 1

    files.failing = None
    s4 = snapshot(
        parameter("/app/a", "three", version=3),
        parameter("/app/b", "b2", version=2),
        parameter("/app/c", "c"),
        generation=4,
    )
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
        current = values_snapshot({"a": f"v{n}"}, generation=n)
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
    s1 = values_snapshot({"a": "one"})
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
    s1 = values_snapshot({"a": "one"})
    assert await chain.publish(s1, Snapshot().diff(s1), True) is False
    await asyncio.sleep(0.2)
    assert len(files.got) == 1 and events == []


async def test_a_replaced_files_output_that_cannot_write_holds_the_tellers() -> None:
    chain, _, teller, _, _ = chain_of()
    await chain.start()
    s1 = values_snapshot({"a": "one"})
    await chain.publish(s1, Snapshot().diff(s1), True)
    new = Files()
    new.failing = NotDelivered("refused")
    await chain.replace("files", new, s1)
    assert chain.held
    teller.files = new
    s2 = values_snapshot({"a": "two"}, generation=2)
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
    s1 = values_snapshot({"a": "one"})
    await chain.publish(s1, Snapshot().diff(s1), True)
    await chain.stop()
    tried = len(files.got)
    await asyncio.sleep(0.2)
    assert len(files.got) == tried


# --- order, readiness, replace and stop, seen through outputs that keep a journal -------------

CHANGE = Change(updated=(VersionChange("/app/a", 1, 2),))


class Recorded:
    """An output that writes what happens to it in a journal shared with the test."""

    def __init__(self, name: str, journal: list[str], *, fails: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fails = fails

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        self.journal.append(f"publish {self.name} {snapshot.generation}{' first' if first else ''}")
        if self.fails:
            raise RuntimeError(f"{self.name} broke")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.fails:
            raise RuntimeError(f"{self.name} broke on stop")


def recorded_chain(
    slots: list[Slot], journal: list[str], *, failing: frozenset[Slot] = frozenset()
) -> tuple[OutputChain, Metrics]:
    """A chain holding one Recorded output per slot, given in `slots` order; readiness noted
    in the journal as "served"."""
    outputs: dict[Slot, Output | None] = {
        slot: Recorded(slot, journal, fails=slot in failing) for slot in slots
    }
    metrics = Metrics()
    return OutputChain(outputs, metrics, lambda: journal.append("served")), metrics


def failures(metrics: Metrics, slot: str) -> float:
    value = metrics.registry.get_sample_value("ssm_sidecar_output_failures_total", {"output": slot})
    return value or 0.0


async def test_publish_follows_the_declared_order_whatever_order_outputs_come_in() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(list(reversed(SLOTS)), journal)
    assert chain.slots() == list(SLOTS)
    await chain.publish(values_snapshot({"a": "1"}, generation=2), CHANGE, False)
    assert journal == [f"publish {slot} 2" for slot in SLOTS]


async def test_a_teller_failing_is_logged_and_counted_and_the_other_tellers_still_publish() -> None:
    journal: list[str] = []
    chain, metrics = recorded_chain(
        ["systemd", "files", "notify", "exec"], journal, failing=frozenset({"exec"})
    )
    with capture_logs() as logs:
        delivered = await chain.publish(
            values_snapshot({"a": "s3cret"}, generation=2), CHANGE, False
        )
    assert delivered
    assert journal == ["publish files 2", "publish exec 2", "publish notify 2", "publish systemd 2"]
    assert failures(metrics, "exec") == 1
    assert failures(metrics, "notify") == 0
    (failed,) = [e for e in logs if e["event"] == "output_failed"]
    assert failed["output"] == "exec" and failed["log_level"] == "error"
    assert "exec broke" in failed["error"] and "s3cret" not in repr(logs)


async def test_a_serving_output_failing_is_counted_and_the_other_serving_ones_publish() -> None:
    journal: list[str] = []
    chain, metrics = recorded_chain(
        ["notify", "files", "http", "ops"], journal, failing=frozenset({"http"})
    )
    with capture_logs() as logs:
        delivered = await chain.publish(values_snapshot({"a": "1"}), Change(), True)
    assert not delivered and chain.held
    assert journal == ["publish http 1 first", "publish ops 1 first", "publish files 1 first"]
    assert failures(metrics, "http") == 1
    assert [e["output"] for e in logs if e["event"] == "output_failed"] == ["http"]


async def test_served_comes_after_the_serving_outputs_and_before_the_first_teller() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(["notify", "files", "http", "exec"], journal)
    await chain.publish(values_snapshot({"a": "1"}), Change(), True)
    assert journal == [
        "publish http 1 first",
        "publish files 1 first",
        "served",
        "publish exec 1 first",
        "publish notify 1 first",
    ]
    # Readiness is announced on the first publish only.
    await chain.publish(values_snapshot({"a": "2"}, generation=2), CHANGE, False)
    assert journal.count("served") == 1


async def test_served_is_announced_when_there_is_nothing_to_tell() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(["files", "ops"], journal)
    await chain.publish(values_snapshot({"a": "1"}), Change(), True)
    assert journal == ["publish ops 1 first", "publish files 1 first", "served"]
    empty, _ = recorded_chain([], journal)
    await empty.publish(values_snapshot({"a": "1"}), Change(), True)
    assert journal[-1] == "served"


async def test_served_comes_first_when_only_tellers_are_there() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(["systemd", "notify"], journal)
    await chain.publish(values_snapshot({"a": "1"}), Change(), True)
    assert journal == ["served", "publish notify 1 first", "publish systemd 1 first"]
    assert set(SLOTS[: len(SERVING)]) == SERVING, "the serving slots come first"


async def test_replace_starts_the_new_output_feeds_it_what_is_served_then_stops_the_old() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(["http", "files", "systemd"], journal)
    old = chain.get("files")
    new = Recorded("new-files", journal)
    served = values_snapshot({"a": "1"}, generation=3)
    await chain.replace("files", new, served)
    assert journal == ["start new-files", "publish new-files 3 first", "stop files"]
    assert chain.get("files") is new and old is not new
    assert chain.slots() == ["http", "files", "systemd"]

    journal.clear()
    await chain.replace("notify", Recorded("notify", journal), served)
    assert chain.slots() == ["http", "files", "notify", "systemd"], "in its declared place"
    await chain.publish(values_snapshot({"a": "2"}, generation=4), CHANGE, False)
    assert journal[-4:] == [
        "publish http 4",
        "publish new-files 4",
        "publish notify 4",
        "publish systemd 4",
    ]


async def test_replace_with_nothing_empties_the_slot_and_before_a_load_feeds_nothing() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(["files", "notify"], journal)
    await chain.replace("notify", None, values_snapshot({"a": "1"}))
    assert journal == ["stop notify"]
    assert chain.slots() == ["files"] and chain.get("notify") is None
    journal.clear()
    await chain.replace("exec", Recorded("exec", journal), None)
    assert journal == ["start exec"]
    assert chain.slots() == ["files", "exec"]


async def test_stop_goes_in_reverse_order_and_logs_a_failure_without_stopping_there() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(list(SLOTS), journal, failing=frozenset({"notify"}))
    with capture_logs() as logs:
        await chain.stop()
    assert journal == [f"stop {slot}" for slot in reversed(SLOTS)]
    (failed,) = [e for e in logs if e["event"] == "output_stop_failed"]
    assert failed["output"] == "notify" and "notify broke on stop" in failed["error"]


async def test_start_goes_in_declared_order() -> None:
    journal: list[str] = []
    chain, _ = recorded_chain(["systemd", "http", "exec"], journal)
    await chain.start()
    assert journal == ["start http", "start exec", "start systemd"]
