"""Fleet mode's facade: joins the fleet, keeps the role, runs the lease, follow and watch loops.

Roles: `watcher` (holds the lease: runs the versions-first cycle every watch_interval and
publishes), `follower` (applies records from the stream, no SSM call but its safety cycle),
`polling` (Valkey unreachable, the state stale or not verifying: polls SSM on refresh.interval
like an agent alone, and rejoins when it can), `alone` (no fleet key: never joins, says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis.exceptions import RedisError

import agent.tasks as tasks
from agent.config import Config, FleetConfig
from agent.fleet.follower import Follower, StaleRecord
from agent.fleet.kms import DecryptFailed, KmsDecryptor
from agent.fleet.records import Record, RefusedRecord, Signer, state_digest
from agent.fleet.source import FleetSource
from agent.fleet.stream import KEY, META, RESERVED, FleetStore
from agent.fleet.watcher import changed_records
from agent.logs import redactor
from agent.metrics import Metrics
from agent.results import SourceError
from agent.sources.aws import ApiError
from agent.sources.base import LoadResult
from agent.sources.ssm import SsmSource
from agent.state import AgentState, FleetStatus

log = structlog.get_logger(__name__)

ROLES = ("starting", "watcher", "follower", "polling", "alone")
#: SSM calls per second the fleet's per-name fetches may use together (a quarter of 40 TPS).
FETCH_RATE = 10.0
JOIN_WAIT = 5.0
_VALKEY_ERRORS = (RedisError, OSError)


class NoKey(Exception):
    """The fleet key cannot be had: this agent polls alone."""


def fingerprint(cfg: Config) -> str:
    """Agents join one fleet only when they serve the same parameters with the same key."""
    assert cfg.fleet is not None
    data = {
        "parameters": [e.model_dump(mode="json") for e in cfg.parameters],
        "key": cfg.fleet.key_parameter,
        "region": cfg.source.region,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def redacted_url(url: str) -> str:
    """The URL without a password (redis://:secret@host -> redis://***@host)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


class Fleet:
    def __init__(
        self,
        cfg: Config,
        ssm: SsmSource,
        metrics: Metrics,
        state: AgentState,
        rng: random.Random | None = None,
    ) -> None:
        assert cfg.fleet is not None
        self.cfg: FleetConfig = cfg.fleet
        self.refresh_interval = cfg.refresh.interval
        self.metrics = metrics
        self.rng = rng or random.Random()
        fp = fingerprint(cfg)
        self.scope = f"{self.cfg.name}:{fp}"
        self.lease_ttl = max(5.0, 3 * self.cfg.watch_interval)
        self.stale_after = max(30.0, 5 * self.cfg.watch_interval + self.lease_ttl)
        block = min(5.0, max(1.0, 2 * self.cfg.watch_interval))
        self.store = FleetStore(
            self.cfg.redis_url, f"ssm-sidecar:{{{self.cfg.name}:{fp}}}:", block, self.lease_ttl
        )
        self.ssm = ssm
        self.kms = KmsDecryptor(ssm.aws_session, metrics)
        self.follower = Follower(
            cfg.parameters, self.kms, self._fetch_names, self._fetch_window, metrics, self.rng
        )
        self.status = FleetStatus(self.cfg.name)
        state.fleet = self.status
        self.state = state
        self.source = FleetSource(self, ssm)
        self.on_change: Callable[[], None] = lambda: None
        self.follower.on_change = lambda: self.on_change()
        self.member = uuid.uuid4().hex
        self.signer: Signer | None = None
        self.role = "starting"
        self._joined = asyncio.Event()
        self._running = False
        self._need_resync = True
        self._last_id = "0-0"
        self._published: dict[str, Record] = {}
        self._wires: dict[str, str] = {}
        self._safety_due = time.monotonic() + self._safety_delay()
        self._set_role("starting", None)
        metrics.fleet_connected.set(0)

    # --- role and status -----------------------------------------------------------------

    def _set_role(self, role: str, reason: str | None) -> None:
        changed = role != self.role or reason != self.status.reason
        self.role = self.status.role = role
        self.status.reason = reason
        for r in ROLES:
            self.metrics.fleet_role.labels(role=r).set(1 if r == role else 0)
        if changed and role != "starting":
            emit = log.warning if role in ("polling", "alone") else log.info
            emit("fleet_role", fleet=self.cfg.name, role=role, reason=reason)

    def _set_connected(self, connected: bool, error: BaseException | None = None) -> None:
        if self.status.connected and not connected:
            log.warning(
                "fleet_valkey_unreachable",
                url=redacted_url(self.cfg.url),
                error=f"{type(error).__name__}: {error}" if error else None,
            )
        elif connected and not self.status.connected and self.role != "starting":
            log.info("fleet_valkey_reachable", url=redacted_url(self.cfg.url))
        self.status.connected = connected
        self.metrics.fleet_connected.set(1 if connected else 0)

    def _lost_valkey(self, error: BaseException) -> None:
        self._set_connected(False, error)
        self._need_resync = True
        if self.role in ("watcher", "follower", "starting"):
            self._set_role("polling", "Valkey unreachable: polling SSM on refresh.interval")

    def _safety_delay(self) -> float:
        return self.cfg.safety_interval * self.rng.uniform(0.8, 1.0)

    def safety_due(self) -> bool:
        return time.monotonic() >= self._safety_due

    def safety_done(self) -> None:
        self._safety_due = time.monotonic() + self._safety_delay()

    async def wait_joined(self) -> None:
        """The first load waits (a moment) for the join, so it can come from the fleet."""
        if self._running and not self._joined.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), JOIN_WAIT)

    # --- running -------------------------------------------------------------------------

    async def run(self) -> None:
        self._running = True
        try:
            await self._join()
        finally:
            self._joined.set()
        if self.role == "alone":
            await asyncio.Event().wait()  # runs until stopped, like the other tasks (tasks.py)
        loops = [
            tasks.spawn(self._lease_loop(), "fleet-lease"),
            tasks.spawn(self._follow_loop(), "fleet-follow"),
            tasks.spawn(self._watch_loop(), "fleet-watch"),
        ]
        try:
            await asyncio.gather(*loops)  # each runs until stopped; one that dies ends this one
        finally:
            for loop in loops:
                await tasks.cancel(loop)

    async def close(self) -> None:
        with contextlib.suppress(*_VALKEY_ERRORS):
            if self.role == "watcher":
                await self.store.lease.release()
        await self.follower.close()
        with contextlib.suppress(*_VALKEY_ERRORS):
            await self.store.close()
        await self.kms.close()

    async def _join(self) -> None:
        try:
            key = await self._get_key()
            self.signer = Signer(key, self.scope)
        except (NoKey, ValueError) as exc:
            self._set_role("alone", f"no fleet key ({exc}): polling SSM alone")
            return
        try:
            await self._resync("join")
        except _VALKEY_ERRORS as exc:
            self._lost_valkey(exc)

    async def _get_key(self) -> str:
        """The fleet key: from its KMS ciphertext in the state hash where KMS allows, else
        from SSM with this agent's own rights (one GetParameters call)."""
        name = self.cfg.key_parameter
        try:
            entry = await self.store.get_key_entry()
            self._set_connected(True)
        except _VALKEY_ERRORS as exc:
            self._set_connected(False, exc)
            entry = None
        if entry is not None:
            try:
                data = json.loads(entry)
                arn, ciphertext = str(data["arn"]), str(data["value"])
                if _arn_names(arn, name):
                    key = await self.kms.decrypt(ciphertext, arn)
                    redactor.add(key)
                    return key
            except (ValueError, KeyError, TypeError, DecryptFailed) as exc:
                log.info("fleet_key_from_kms_failed", reason=str(exc))
        try:
            found = await self.ssm.get_raw([name], with_decryption=True)
        except ApiError as exc:
            raise NoKey(f"{name}: {exc.code}") from None
        except SourceError as exc:
            raise NoKey(f"{name}: {exc}") from None
        if not found:
            raise NoKey(f"{name}: ParameterNotFound")
        key = str(found[0].get("Value", ""))
        redactor.add(key)
        return key

    # --- followers -----------------------------------------------------------------------

    async def _resync(self, reason: str) -> bool:
        """Take the state hash as a whole (it verifies, and is fresh) and apply what is newer;
        False (polling) when it is missing, stale or does not verify."""
        assert self.signer is not None
        state, last = await self.store.read_state()
        self._set_connected(True)
        self.metrics.fleet_resyncs.labels(reason=reason).inc()
        meta = state.get(META)
        if meta is None:
            self._poll("no watcher has published yet")
            return False
        try:
            at, digest = self.signer.verify_meta(meta)
        except RefusedRecord as exc:
            self.metrics.fleet_records_refused.labels(reason="meta").inc()
            self._poll(f"the fleet state does not verify ({exc})")
            return False
        wires = {k: v for k, v in state.items() if k not in RESERVED}
        if state_digest(wires) != digest:
            self.metrics.fleet_records_refused.labels(reason="state").inc()
            self._poll("the fleet state does not match its signed digest")
            return False
        if time.time() - at > self.stale_after:
            self._poll("the fleet state is stale (no watcher for a while)")
            return False
        changed = False
        spread = self.state.ready
        for wire in wires.values():
            try:
                changed |= await self.follower.apply(self.signer.verify(wire), spread)
            except RefusedRecord:
                self.metrics.fleet_records_refused.labels(reason="signature").inc()
            except StaleRecord:
                pass  # our own SSM cycle saw a newer version already
        self._last_id = last
        self._need_resync = False
        if self.role != "watcher":
            self._set_role("follower", None)
        if changed:
            self.on_change()
        return True

    def _poll(self, reason: str) -> None:
        if self.role != "watcher":
            self._set_role("polling", reason + ": polling SSM on refresh.interval")

    async def _follow_loop(self) -> None:
        backoff = 0.5
        while True:
            if self.role == "watcher":
                await asyncio.sleep(self.cfg.watch_interval)
                continue
            try:
                if self._need_resync and not await self._resync(
                    "join" if self._last_id == "0-0" else "gap"
                ):
                    await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, 30.0)
                    continue
                entries = await self.store.read(self._last_id)
                self._set_connected(True)
                backoff = 0.5
                if self.role == "polling":  # Valkey answers again: rejoin through a resync
                    self._need_resync = True
                    continue
                await self._apply_entries(entries)
            except _VALKEY_ERRORS as exc:
                self._lost_valkey(exc)
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 30.0)

    async def _apply_entries(self, entries: Sequence[tuple[str, str, str]]) -> None:
        assert self.signer is not None
        applied = 0
        for entry_id, prev, wire in entries:
            if prev != self._last_id:
                log.info("fleet_gap", last=self._last_id, prev=prev)
                self._need_resync = True
                break
            self._last_id = entry_id
            try:
                record = self.signer.verify(wire)
            except RefusedRecord as exc:
                self._refused(str(exc), entry_id)
                continue
            try:
                if await self.follower.apply(record, spread=True):
                    applied += 1
            except StaleRecord:
                self._refused("stale", entry_id, record.name)
        if applied:
            self.metrics.fleet_records_applied.inc(applied)
            self.status.records_applied += applied
            self.status.last_record = time.time()
            self.on_change()

    def _refused(self, reason: str, entry_id: str, name: str | None = None) -> None:
        self.metrics.fleet_records_refused.labels(reason=reason).inc()
        log.warning("fleet_record_refused", reason=reason, entry=entry_id, name=name)

    async def _fetch_names(self, names: Sequence[str]) -> list[dict[str, Any]]:
        return await self.ssm.get_raw(names, with_decryption=True)

    async def _fetch_window(self) -> float:
        """Seconds to spread per-name fetches over: the fleet's size at FETCH_RATE calls/s."""
        try:
            members = await self.store.member_count()
        except _VALKEY_ERRORS:
            members = 1
        return min(self.cfg.safety_interval / 2, members / FETCH_RATE)

    # --- the lease and the watcher -------------------------------------------------------

    async def _lease_loop(self) -> None:
        next_heartbeat = 0.0
        while True:
            try:
                if time.monotonic() >= next_heartbeat:
                    await self.store.heartbeat(self.member)
                    next_heartbeat = time.monotonic() + 15.0
                if self.role == "watcher":
                    if not await self.store.lease.renew():
                        self._demote("the lease went to another agent")
                elif (
                    self.signer is not None
                    and self.status.connected
                    and await self.store.lease.acquire()
                ):
                    await self._promote()
                self._set_connected(True)
            except _VALKEY_ERRORS as exc:
                self._lost_valkey(exc)
            await asyncio.sleep(self.lease_ttl / 3 * self.rng.uniform(0.8, 1.0))

    async def _promote(self) -> None:
        """This agent holds the lease: take over the published state, then run a cycle now."""
        assert self.signer is not None
        state, _last = await self.store.read_state()
        published: dict[str, Record] = {}
        wires: dict[str, str] = {}
        for name, wire in state.items():
            if name in RESERVED:
                continue
            try:
                published[name] = self.signer.verify(wire)
                wires[name] = wire
            except RefusedRecord:
                await self.store.redis.hdel(self.store.state, name)  # a forgery: drop it
                self._refused("signature", "state:" + name, name)
        self._published, self._wires = published, wires
        if KEY not in state:
            await self._publish_key_entry()
        self._set_role("watcher", None)
        self.on_change()

    async def _publish_key_entry(self) -> None:
        """The fleet key's ciphertext, so that followers KMS allows need no SSM call for it."""
        try:
            found = await self.ssm.get_raw([self.cfg.key_parameter], with_decryption=False)
        except (ApiError, SourceError) as exc:
            log.info("fleet_key_ciphertext_unavailable", reason=str(exc))
            return
        if found and found[0].get("ARN"):
            entry = json.dumps({"arn": found[0]["ARN"], "value": found[0].get("Value", "")})
            await self.store.set_key_entry(entry)

    def _demote(self, reason: str) -> None:
        log.info("fleet_lease_lost", reason=reason)
        self._need_resync = True
        self._set_role("follower", None)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.watch_interval)
            if self.role == "watcher" or (self.role == "follower" and self.safety_due()):
                self.on_change()

    async def publish(self, result: LoadResult) -> None:
        """The watcher's cycle is done: publish what changed (and the meta) atomically."""
        if self.signer is None or self.role != "watcher":
            return
        records = changed_records(result.parameters, result.errors, self._published)
        signed = [(r.name, self.signer.sign(r)) for r in records]
        wires = {**self._wires, **dict(signed)}
        meta = self.signer.sign_meta(time.time(), state_digest(wires))
        try:
            last = await self.store.publish(signed, meta)
        except _VALKEY_ERRORS as exc:
            self._lost_valkey(exc)
            return
        if last is None:
            self._demote("the lease expired before publishing")
            return
        self._wires = wires
        self._published.update({r.name: r for r in records})
        if records:
            self.metrics.fleet_records_published.inc(len(records))
            log.info("fleet_published", records=len(records), last=last)


def _arn_names(arn: str, name: str) -> bool:
    """Whether a parameter ARN is the parameter `name` (a name or an ARN itself)."""
    if name.startswith("arn:"):
        return arn == name
    return arn.endswith(":parameter/" + name.lstrip("/"))
