"""The poll loop: load from the source, keep last good values, swap the snapshot, publish changes.

Timing: the first load runs at once; the next cycle is spread uniformly over one interval (so a
fleet started together does not poll in step); then every interval +- jitter. After a failed cycle
the wait is exponential backoff with full jitter, capped at max_backoff.

A cycle never raises: a SourceError is the source saying it could not answer; any other exception
is a bug or an answer nobody foresaw, and is handled the same way (the last good values stay
served, the failure is counted in `refresh_errors_total{kind="unexpected"}`, shown in /healthz
and backed off), logged with its place once per kind until a cycle succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import structlog

from agent.config import RefreshConfig
from agent.metrics import Metrics
from agent.removals import RemovalGuard
from agent.results import CycleResult, ParameterError, SourceError
from agent.snapshot import Change, Parameter, Secret, Snapshot
from agent.sources.base import LoadResult, Source
from agent.state import AgentState
from agent.tasks import describe, where

log = structlog.get_logger(__name__)

# Returns False when the snapshot is held back (a serving output such as the files did not get
# it): the publisher then marks the agent ready itself once it is delivered.
Publisher = Callable[[Snapshot, Change, bool], Awaitable[bool | None]]
MIN_DELAY = 0.05


def _merge(
    previous: Snapshot, result: LoadResult
) -> tuple[dict[str, Parameter], list[ParameterError]]:
    """The loaded parameters, plus the last good value of each one whose load failed."""
    params = dict(result.parameters)
    errors = list(result.errors)
    for name, old in previous.parameters.items():
        if name not in params and any(e.covers(old) for e in errors):
            params[name] = old
    # Two parameters under one key would overwrite each other in files and bundles: keep the
    # one already served (or the first by name) and report the other.
    owner: dict[str, str] = {}
    for name in sorted(params, key=lambda n: (n not in previous.parameters, n)):
        key = params[name].key
        if key in owner:
            errors.append(
                ParameterError(name, "KeyCollision", f"key {key!r} is also the key of {owner[key]}")
            )
            del params[name]
        else:
            owner[key] = name
    return params, errors


def _merge_secrets(
    previous: Snapshot,
    result: LoadResult,
    params: dict[str, Parameter],
    errors: list[ParameterError],
) -> dict[str, Secret]:
    """The loaded secrets, plus the last good value of each one whose load failed (unless it
    is gone). A secret whose key is a parameter's (or another secret's) would overwrite it in
    files and bundles: the one already served stays (else the parameter), the other is
    reported naming both and left out."""
    merged = dict(result.secrets)
    for ident, old in previous.secrets.items():
        if ident not in merged and any(e.covers(old) for e in errors):
            merged[ident] = old
    owner = {p.key: p.name for p in params.values()}
    secrets: dict[str, Secret] = {}
    for ident in sorted(merged, key=lambda i: (i not in previous.secrets, i)):
        s = merged[ident]
        if s.key in owner:
            errors.append(
                ParameterError(
                    s.name,
                    "KeyCollision",
                    f"key {s.key!r} of secret {s.name} is also the key of {owner[s.key]}",
                    secret=True,
                    keep=False,
                )
            )
        else:
            owner[s.key] = f"secret {s.name}"
            secrets[ident] = s
    return secrets


def _complete(
    params: dict[str, Parameter],
    errors: list[ParameterError],
    secrets: dict[str, Secret] | None = None,
) -> bool:
    """Every required name or path that failed still has a (last good) value."""
    held: list[Parameter | Secret] = [*params.values(), *(secrets or {}).values()]
    return all(any(e.covers(p) for p in held) for e in errors if e.required)


class Refresher:
    def __init__(
        self,
        source: Source,
        cfg: RefreshConfig,
        state: AgentState,
        metrics: Metrics,
        publish: Publisher,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.cfg = cfg
        self.state = state
        self.metrics = metrics
        self._publish = publish
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.removals = RemovalGuard()
        # Kinds (type and place) of unexpected exceptions already logged since the last success.
        self._logged_kinds: set[str] = set()

    def trigger(self) -> None:
        """Run the next cycle now (file edits, SIGHUP, an operator's request)."""
        self._wake.set()

    async def refresh_now(self) -> CycleResult:
        return await self.cycle()

    async def cycle(self) -> CycleResult:
        async with self._lock:
            try:
                return await self._cycle()
            except Exception as exc:  # the loop must outlive any bug in a cycle
                return self._unexpected(exc)

    def _unexpected(self, exc: Exception) -> CycleResult:
        kind = f"{type(exc).__name__} at {where(exc)}"
        # The type and place only: an exception's text may quote data, /healthz must not.
        reason = f"unexpected {kind}"
        self.state.record_failure(reason)
        self.metrics.refresh_errors.labels(kind="unexpected").inc()
        fields = {
            "error": describe(exc),
            "where": where(exc),
            "failures": self.state.consecutive_failures,
            "serving": len(self.state.snapshot),
        }
        if kind not in self._logged_kinds:  # repeats are counted, not logged
            self._logged_kinds.add(kind)
            log.error("refresh_unexpected_error", **fields, repeats="logged once until a success")
        return CycleResult(False, False, Change(), reason=reason)

    async def _cycle(self) -> CycleResult:
        started = time.monotonic()
        previous = self.state.snapshot
        try:
            result = await self.source.load(previous)
        except SourceError as exc:
            self.state.record_failure(str(exc))
            self.metrics.refresh_errors.labels(
                kind="throttled" if exc.throttled else "source"
            ).inc()
            log.warning(
                "refresh_failed",
                reason=str(exc),
                throttled=exc.throttled,
                failures=self.state.consecutive_failures,
                serving=len(previous),
            )
            return CycleResult(False, False, Change(), reason=str(exc))
        finally:
            self.metrics.refresh_duration.observe(time.monotonic() - started)

        params, errors = _merge(previous, result)
        self._hold_big_removals(previous, params)
        secrets = _merge_secrets(previous, result, params, errors)
        complete = _complete(params, errors, secrets)
        self.state.parameter_errors = tuple(errors)
        for e in errors:
            kind = "secret" if e.secret else "parameter"
            self.metrics.refresh_errors.labels(kind=kind).inc()
            log.warning(f"{kind}_failed", name=e.subject, code=e.code, reason=e.message)

        candidate = Snapshot.build(params, previous.generation + 1, secrets)
        change = previous.diff(candidate)
        first = complete and not self.state.ready
        if change or first or previous.generation == 0:
            await self.state.swap(candidate)
        self._observe(change, first=not self.state.ready)
        if not complete and not self.state.ready:
            missing = sorted(e.subject for e in errors if e.required)
            self.state.record_failure(f"required parameters missing: {', '.join(missing)}")
            log.warning("load_incomplete", missing=missing)
            return CycleResult(True, False, change, tuple(errors), "required parameters missing")
        if self.state.consecutive_failures:
            log.info("refresh_recovered", failures=self.state.consecutive_failures)
        self._logged_kinds.clear()
        self.state.record_success()
        self.metrics.last_refresh_success.set(time.time())
        held = False
        if change or first:
            # On the first load the publisher marks the agent ready once the values are
            # served and written, before anyone (exec child, signal, systemd) is told.
            held = await self._publish(self.state.snapshot, change, first) is False
        if first and not held:
            self.mark_ready()
        return CycleResult(True, True, change, tuple(errors))

    def _hold_big_removals(self, previous: Snapshot, params: dict[str, Parameter]) -> None:
        """Keeps what a too-big removal would drop until the next cycle confirms it."""
        decision = self.removals.check(previous.parameters, params, self.cfg.max_removal_share)
        if decision.held:
            keys = {p.key for p in params.values()}
            for name in decision.held:
                old = previous.parameters[name]
                if old.key not in keys:  # never two parameters under one key
                    params[name] = old
            self.metrics.removals_held.inc()
            log.warning(
                "removal_held",
                removing=len(decision.held),
                serving=len(previous),
                max_removal_share=self.cfg.max_removal_share,
                names=list(decision.held[:10]),
                until="the next cycle confirms it",
            )
        if decision.confirmed:
            log.info("removal_confirmed", removing=len(decision.confirmed))

    def mark_ready(self) -> None:
        """The first complete load is served (and written): /readyz turns 200. Idempotent."""
        if self.state.ready:
            return
        self.state.ready = True
        self.metrics.ready.set(1)
        snapshot = self.state.snapshot
        log.info("ready", parameters=len(snapshot), secrets=len(snapshot.secrets))

    def _observe(self, change: Change, first: bool) -> None:
        snapshot = self.state.snapshot
        self.metrics.parameters.set(len(snapshot))
        # The first load is summed up by the "ready" event; each of its parameters is only
        # worth a line when debugging (10,000 of them would bury everything else).
        log_change = log.debug if first else log.info
        for kind, items in (
            ("added", change.added),
            ("updated", change.updated),
            ("removed", change.removed),
        ):
            for c in items:
                self.metrics.parameter_changes.labels(kind=kind).inc()
                log_change(
                    "parameter_changed",
                    change=kind,
                    name=c.name,
                    old_version=c.old_version,
                    new_version=c.new_version,
                )
        for c in change.removed:
            with contextlib.suppress(KeyError):
                self.metrics.parameter_last_modified.remove(c.name)
        for c in change.added + change.updated:
            p = snapshot.get(c.name)
            if p is not None:
                self.metrics.parameter_last_modified.set(p.name, p.last_modified.timestamp())
        self._observe_secrets(change, log_change)

    def _observe_secrets(self, change: Change, log_change: Callable[..., object]) -> None:
        secrets = self.state.snapshot.secrets
        self.metrics.secrets.set(len(secrets))
        self.metrics.secret_version_age.set_all(
            {(s.name, s.selector or ""): s.created.timestamp() for s in secrets.values()}
        )
        for c in change.secrets:
            self.metrics.secret_changes.labels(kind=c.kind).inc()
            log_change(
                "secret_changed",
                change=c.kind,
                name=c.name,
                selector=c.selector,
                old_version_id=c.old_version_id,
                new_version_id=c.new_version_id,
            )

    # --- timing ------------------------------------------------------------------------------

    def next_delay(self, result: CycleResult, first_success: bool) -> float:
        interval = self.cfg.interval
        if not result.complete:
            failures = max(1, self.state.consecutive_failures)
            ceiling = min(self.cfg.max_backoff, interval * 2**failures)
            return max(MIN_DELAY, self._rng.uniform(0, ceiling))
        if first_success:
            return max(MIN_DELAY, self._rng.uniform(0, interval))
        spread = interval * self.cfg.jitter
        return max(MIN_DELAY, interval + self._rng.uniform(-spread, spread))

    async def run(self) -> None:
        """Cycle forever (until cancelled)."""
        was_complete = False
        while True:
            self._wake.clear()
            result = await self.cycle()
            delay = self.next_delay(result, result.complete and not was_complete)
            was_complete = was_complete or result.complete
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
