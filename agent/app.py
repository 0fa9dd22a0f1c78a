"""Wires config -> source -> refresher -> snapshot -> outputs, and owns the lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Coroutine
from typing import Any

import structlog

from agent.config import Config
from agent.logs import redactor
from agent.metrics import Metrics
from agent.outputs.base import Output
from agent.refresher import CycleResult, Refresher
from agent.snapshot import Change, Snapshot
from agent.sources.factory import build_source
from agent.sources.file import FileSource
from agent.state import AgentState

log = structlog.get_logger("agent.app")


def _register_secrets(snapshot: Snapshot) -> None:
    values: list[str] = []
    for p in snapshot:
        values.append(p.value)
        if p.encrypted_value:
            values.append(p.encrypted_value)
    redactor.update(values)


class Agent:
    def __init__(
        self, cfg: Config, *, metrics: Metrics | None = None, rng: random.Random | None = None
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.state = AgentState()
        self.state.on_swap.append(_register_secrets)
        self.source = build_source(cfg, self.metrics)
        self.refresher = Refresher(
            self.source, cfg.refresh, self.state, self.metrics, self._publish, rng
        )
        self.outputs: list[Output] = self._build_outputs()
        self._tasks: list[asyncio.Task[Any]] = []

    def _build_outputs(self) -> list[Output]:
        """In publish order: files are written before anyone is told."""
        return []

    async def _publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        for output in self.outputs:
            try:
                await output.publish(snapshot, change, first)
            except Exception as exc:
                # One broken output must not stop the others or the refresher.
                log.error("output_failed", output=type(output).__name__, error=repr(exc))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _watch_source_file(self, source: FileSource) -> None:
        async for _ in source.changes():
            log.info("source_file_changed", path=str(source.path))
            self.refresher.trigger()

    async def start(self) -> None:
        for output in self.outputs:
            await output.start()
        self._spawn(self.refresher.run(), "refresher")
        if isinstance(self.source, FileSource):
            self._spawn(self._watch_source_file(self.source), "source-watch")
        log.info(
            "started",
            source=self.cfg.source.type,
            entries=len(self.cfg.parameters),
            interval=self.cfg.refresh.interval,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for output in reversed(self.outputs):
            try:
                await output.stop()
            except Exception as exc:
                log.error("output_stop_failed", output=type(output).__name__, error=repr(exc))
        await self.source.close()
        log.info("stopped")

    def reload(self) -> None:
        """SIGHUP: refresh now."""
        log.info("reload_requested")
        self.refresher.trigger()

    async def run(self, stop: asyncio.Event) -> int:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
        return 0

    async def once(self) -> CycleResult:
        """One complete load and every output written once (for init containers)."""
        try:
            return await self.refresher.cycle()
        finally:
            for output in reversed(self.outputs):
                with contextlib.suppress(Exception):
                    await output.stop()
            await self.source.close()
