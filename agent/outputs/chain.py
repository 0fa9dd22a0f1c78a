"""The output chain: every output in one declared order, published to in that order.

The order is the product's promise: values are served (HTTP API, ops listener) and written
(files) before anyone is told of them (the exec child, a signal, a command, systemd). `SLOTS`
declares it once; everything else (publishing, readiness, replacing an output on reload,
stopping) follows from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Literal, get_args

import structlog

from agent.metrics import Metrics
from agent.outputs.base import Output
from agent.snapshot import Change, Snapshot

log = structlog.get_logger(__name__)

Slot = Literal["http", "ops", "files", "exec", "notify", "systemd"]
#: Publish order. systemd stays last: READY=1 means served, written and announced.
SLOTS: tuple[Slot, ...] = get_args(Slot)
#: The slots that make values available; every slot after them tells someone about them.
SERVING: frozenset[Slot] = frozenset(("http", "ops", "files"))


class OutputChain:
    """Holds at most one output per slot and publishes to them in `SLOTS` order.

    One output's failure is logged and counted and the others still get the snapshot. On the
    first publish, `on_served` is called once every serving output has it: readiness (/readyz)
    comes before the exec child starts, a signal goes out or systemd hears READY=1.
    """

    def __init__(
        self,
        outputs: Mapping[Slot, Output | None],
        metrics: Metrics,
        on_served: Callable[[], None],
    ) -> None:
        self._metrics = metrics
        self._on_served = on_served
        self._slots: dict[Slot, Output] = {}
        # Rebuilt on every change; a publish in flight keeps iterating the tuple it started with.
        self._ordered: tuple[tuple[Slot, Output], ...] = ()
        for slot, output in outputs.items():
            self._set(slot, output)

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

    async def start(self) -> None:
        for _, output in self._ordered:
            await output.start()

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        served = False
        for slot, output in self._ordered:
            if first and not served and slot not in SERVING:
                served = True
                self._on_served()
            await self._publish_one(slot, output, snapshot, change, first)
        if first and not served:
            self._on_served()

    async def _publish_one(
        self, slot: Slot, output: Output, snapshot: Snapshot, change: Change, first: bool
    ) -> None:
        try:
            await output.publish(snapshot, change, first)
        except Exception as exc:
            # One broken output must not stop the others or the refresher.
            self._metrics.output_failures.labels(output=slot).inc()
            log.error("output_failed", output=slot, error=repr(exc))

    async def replace(self, slot: Slot, new: Output | None, served: Snapshot | None) -> None:
        """Put `new` in `slot` (None empties it), then stop the output that was there.

        `new` is started and fed what is served as its first load before it takes the slot,
        so a new notify output sends nothing for values the app already has.
        """
        old = self._slots.get(slot)
        if new is not None:
            await new.start()
            if served is not None:
                await self._publish_one(slot, new, served, Change(), True)
        self._set(slot, new)
        if old is not None:
            await self._stop_one(slot, old)

    async def stop(self) -> None:
        """Every output, in reverse order: the tellers stop before what they tell about."""
        for slot, output in reversed(self._ordered):
            await self._stop_one(slot, output)

    async def _stop_one(self, slot: Slot, output: Output) -> None:
        try:
            await output.stop()
        except Exception as exc:
            log.error("output_stop_failed", output=slot, error=repr(exc))
