"""A follower's held set: records applied newer-only, SecureStrings decrypted with its own KMS
rights, or fetched from SSM by name (spread over a window) where KMS says no."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

import agent.tasks as tasks
from agent.config import ParameterEntry
from agent.fleet.kms import DecryptFailed, KmsDecryptor
from agent.fleet.records import Record, record_of
from agent.metrics import Metrics
from agent.results import ParameterError, SourceError
from agent.snapshot import Parameter
from agent.sources.aws import ApiError, as_datetime
from agent.sources.base import LoadResult

log = structlog.get_logger(__name__)

FetchNames = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]
Window = Callable[[], Awaitable[float]]


class StaleRecord(Exception):
    """Older than what is held: a replay, or a second watcher behind the first."""


class Follower:
    def __init__(
        self,
        entries: Sequence[ParameterEntry],
        decryptor: KmsDecryptor,
        fetch: FetchNames,
        window: Window,
        metrics: Metrics,
        rng: random.Random,
    ) -> None:
        self._named = [e for e in entries if e.name is not None]
        self._kms = decryptor
        self._fetch = fetch
        self._window = window
        self._metrics = metrics
        self._rng = rng
        self.records: dict[str, Record] = {}
        self.params: dict[str, Parameter] = {}
        self.pending: dict[str, Record] = {}
        self._fetcher: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] = lambda: None

    async def apply(self, rec: Record, spread: bool) -> bool:
        """Hold `rec` if newer than what is held; True when the served set changed."""
        held = self.records.get(rec.name)
        if held is not None and rec.order <= held.order:
            if rec.order < held.order:
                raise StaleRecord(rec.name)
            return False  # the same record again (two watchers, a resync): nothing to do
        self.records[rec.name] = rec
        self.pending.pop(rec.name, None)
        if rec.deleted:
            return self.params.pop(rec.name, None) is not None
        if not rec.is_secure:
            self.params[rec.name] = rec.parameter(rec.value)
            return True
        try:
            plaintext = await self._kms.decrypt(rec.value, rec.arn)
        except DecryptFailed as exc:
            log.info("fleet_decrypt_denied", name=rec.name, reason=str(exc))
            self.pending[rec.name] = rec
            self._schedule_fetch(spread)
            return False
        self.params[rec.name] = rec.parameter(plaintext)
        return True

    def adopt(self, result: LoadResult) -> None:
        """An SSM cycle's result is the truth: hold it (records newer than it stay newer)."""
        for name, p in result.parameters.items():
            rec = record_of(p)
            held = self.records.get(name)
            if held is not None and rec is not None and rec.order < held.order:
                continue
            if rec is not None:
                self.records[name] = rec
            self.params[name] = p
            self.pending.pop(name, None)
        for name in list(self.params):
            if name not in result.parameters and not any(
                e.covers(self.params[name]) for e in result.errors
            ):
                del self.params[name]
                self.records.pop(name, None)

    def result(self) -> LoadResult:
        """The held set as a load result (no call made). A configured name not held, and a
        SecureString waiting for its per-name fetch, are errors: the refresher keeps the last
        value and is not ready without it."""
        errors = [
            ParameterError(rec.name, "FleetPending", "waiting for the per-name fetch", True)
            for rec in self.pending.values()
        ]
        for entry in self._named:
            assert entry.name is not None
            if entry.name not in self.params and entry.name not in self.pending:
                errors.append(
                    ParameterError(
                        entry.name,
                        "ParameterNotFound",
                        "not in the fleet's records",
                        entry.required,
                        name=entry.name,
                    )
                )
        return LoadResult(dict(self.params), tuple(errors), 0, 0)

    # --- the per-name fetch (KMS denied) -------------------------------------------------

    def _schedule_fetch(self, spread: bool) -> None:
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = tasks.spawn(self._fetch_pending(spread), "fleet-fetch", may_end=True)

    async def _fetch_pending(self, spread: bool) -> None:
        delay = self._rng.uniform(0, await self._window()) if spread else 0.0
        await asyncio.sleep(delay)
        while self.pending:
            batch = dict(self.pending)
            requests = [r.name + (r.selector or "") for r in batch.values()]
            try:
                raws = await self._fetch(requests)
            except (ApiError, SourceError) as exc:
                log.warning("fleet_fetch_failed", names=len(batch), reason=str(exc))
                await asyncio.sleep(max(5.0, await self._window()))
                continue
            self._metrics.fleet_fallback_fetches.inc(len(batch))
            for raw in raws:
                rec = batch.get(raw["Name"])
                if rec is None or self.pending.get(rec.name) is not rec:
                    continue  # a newer record arrived meanwhile
                del self.pending[rec.name]
                self.params[rec.name] = Parameter(
                    name=rec.name,
                    key=rec.key,
                    type=rec.type,
                    value=raw.get("Value", ""),
                    version=int(raw.get("Version", rec.version)),
                    last_modified=as_datetime(raw.get("LastModifiedDate")),
                    arn=raw.get("ARN", rec.arn),
                    data_type=raw.get("DataType", rec.data_type),
                    selector=rec.selector,
                    encrypted_value=rec.value
                    if int(raw.get("Version", 0)) == rec.version
                    else None,
                )
            for name, rec in batch.items():
                if self.pending.get(name) is rec:  # not found any more: the watcher will say
                    del self.pending[name]
            self.on_change()

    async def close(self) -> None:
        if self._fetcher is not None:
            await tasks.cancel(self._fetcher)
