"""The output chain: every output in one declared order, published to in that order.

The order is the product's promise: values are served (HTTP API, ops listener) and written
(files) before anyone is told of them (the exec child, a signal, a command, systemd). `SLOTS`
declares it once; everything else (publishing, readiness, replacing an output on reload,
stopping) follows from it.

A serving output that cannot deliver a snapshot (the files output on a full disk) raises
NotDelivered. The chain then holds the snapshot back from every teller (and, on the first load,
from readiness) and publishes it again on a timer (1 s, doubling, capped) and whenever the
refresher publishes a newer one; once every serving output has it, the tellers are told of
everything that changed since they were last told, in one publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import structlog

import agent.tasks as tasks
from agent.metrics import Metrics
from agent.outputs.base import NotDelivered, Output
from agent.snapshot import Change, Snapshot

log = structlog.get_logger(__name__)

Slot = Literal["http", "ops", "files", "exec", "notify", "systemd"]
#: Publish order. systemd stays last: READY=1 means served, written and announced.
SLOTS: tuple[Slot, ...] = get_args(Slot)
#: The slots that make values available; every slot after them tells someone about them.
SERVING: frozenset[Slot] = frozenset(("http", "ops", "files"))
#: First retry of a held snapshot after this many seconds, then doubling up to `retry_max`.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0


@dataclass(frozen=True, slots=True)
class _Held:
    """A snapshot some serving output has not got yet: nobody has been told of it."""

    snapshot: Snapshot
    first: bool
    waiting_for: tuple[Slot, ...]


class OutputChain:
    """Holds at most one output per slot and publishes to them in `SLOTS` order.

    A teller's failure is logged and counted and the others still get the snapshot. A serving
    output's failure (NotDelivered, or any exception) holds the snapshot back from the tellers
    until it is delivered. On the first publish, `on_served` is called once every serving output
    has it: readiness (/readyz) comes before the exec child starts, a signal goes out or systemd
    hears READY=1.
    """

    def __init__(
        self,
        outputs: Mapping[Slot, Output | None],
        metrics: Metrics,
        on_served: Callable[[], None],
        retry_max: float = RETRY_MAX,
    ) -> None:
        self._metrics = metrics
        self._on_served = on_served
        #: The longest wait between two retries of a held snapshot (the app keeps it at most
        #: one refresh interval, so a held set is retried at least as often as the source).
        self.retry_max = retry_max
        self._slots: dict[Slot, Output] = {}
        # Rebuilt on every change; a publish in flight keeps iterating the tuple it started with.
        self._ordered: tuple[tuple[Slot, Output], ...] = ()
        for slot, output in outputs.items():
            self._set(slot, output)
        # One publish at a time: the refresher's, the retry timer's, a reload's.
        self._lock = asyncio.Lock()
        self._held: _Held | None = None
        self._told: Snapshot | None = None  # what the tellers were last told of
        self._started = False
        self._retry: asyncio.Task[None] | None = None

    def _set(self, slot: Slot, output: Output | None) -> None:
        if output is None:
            self._slots.pop(slot, None)
        else:
            self._slots[slot] = output
        self._ordered = tuple((s, self._slots[s]) for s in SLOTS if s in self._slots)

    def get(self, slot: Slot) -> Output | None:
        return self._slots.get(slot)

    def __iter__(self) -> Iterator[Output]:
        return iter([output for _, output in self._ordered])

    def slots(self) -> list[Slot]:
        return [slot for slot, _ in self._ordered]

    @property
    def held(self) -> bool:
        """A snapshot is waiting for a serving output; nobody has been told of it."""
        return self._held is not None

    async def start(self) -> None:
        for _, output in self._ordered:
            await output.start()
        self._started = True

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> bool:
        """Publish in order; False when a serving output did not get it (held back, retried)."""
        async with self._lock:
            return await self._deliver(snapshot, change, first)

    async def _deliver(self, snapshot: Snapshot, change: Change, first: bool) -> bool:
        held = self._held
        if held is not None:
            first = first or held.first
            if self._told is not None:  # everything the tellers have not heard of yet
                change = self._told.diff(snapshot)
        serving = [(s, o) for s, o in self._ordered if s in SERVING]
        waiting_for = tuple(
            [s for s, o in serving if not await self._publish_one(s, o, snapshot, change, first)]
        )
        if waiting_for:
            self._hold(_Held(snapshot, first, waiting_for), was=held)
            return False
        if held is not None:
            log.info("outputs_released", waited_for=list(held.waiting_for))
            self._held = None
            self._stop_retry()
        if first:
            self._on_served()
        for slot, output in self._ordered:
            if slot not in SERVING:
                await self._publish_one(slot, output, snapshot, change, first)
        self._told = snapshot
        return True

    def _hold(self, held: _Held, was: _Held | None) -> None:
        if was is None or was.waiting_for != held.waiting_for:
            tellers = [s for s, _ in self._ordered if s not in SERVING]
            log.warning(
                "outputs_held",
                waiting_for=list(held.waiting_for),
                held_from=tellers + (["ready"] if held.first else []),
                reason="a serving output has not got the current values; retrying",
            )
        self._held = held
        if self._started and (self._retry is None or self._retry.done()):
            self._retry = tasks.spawn(self._retry_held(), "outputs-retry", may_end=True)

    async def _retry_held(self) -> None:
        delay = min(RETRY_FIRST, self.retry_max)
        while True:
            await asyncio.sleep(delay)
            async with self._lock:
                held = self._held
                if held is None:
                    return
                if await self._deliver(held.snapshot, Change(), held.first):
                    return
            delay = min(delay * 2, self.retry_max)

    def _stop_retry(self) -> None:
        task, self._retry = self._retry, None
        if task is not None and task is not asyncio.current_task():
            tasks.release(task)
            task.cancel()

    async def _publish_one(
        self, slot: Slot, output: Output, snapshot: Snapshot, change: Change, first: bool
    ) -> bool:
        """True when `output` took the snapshot. One broken output must not stop the others or
        the refresher: a failure is logged (NotDelivered: by the output) and counted."""
        try:
            await output.publish(snapshot, change, first)
        except NotDelivered:
            return False
        except Exception as exc:
            self._metrics.output_failures.labels(output=slot).inc()
            log.error("output_failed", output=slot, error=repr(exc))
            return False
        return True

    async def replace(self, slot: Slot, new: Output | None, served: Snapshot | None) -> None:
        """Put `new` in `slot` (None empties it), then stop the output that was there.

        `new` is started and fed what is served as its first load before it takes the slot,
        so a new notify output sends nothing for values the app already has. A new serving
        output that cannot take it holds the tellers back like a failed publish; one that
        takes it may release what was held.
        """
        async with self._lock:
            old = self._slots.get(slot)
            delivered = True
            if new is not None:
                await new.start()
                if served is not None:
                    delivered = await self._publish_one(slot, new, served, Change(), True)
            self._set(slot, new)
            if old is not None:
                await self._stop_one(slot, old)
            if slot not in SERVING or served is None:
                return
            held = self._held
            if not delivered:
                first = held.first if held is not None else False
                waiting_for = tuple(sorted({slot, *(held.waiting_for if held else ())}))
                self._hold(_Held(served, first, waiting_for), was=held)
            elif held is not None:
                await self._deliver(served, Change(), held.first)

    async def stop(self) -> None:
        """Every output, in reverse order: the tellers stop before what they tell about."""
        self._stop_retry()
        for slot, output in reversed(self._ordered):
            await self._stop_one(slot, output)

    async def _stop_one(self, slot: Slot, output: Output) -> None:
        try:
            await output.stop()
        except Exception as exc:
            log.error("output_stop_failed", output=slot, error=repr(exc))
