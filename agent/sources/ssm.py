"""SSM Parameter Store through aiobotocore, versions first.

A cycle lists every configured path and name WITHOUT decryption (one call per 10 parameters),
compares versions with the previous snapshot, and decrypts only the SecureStrings whose version
changed (one call per 10 of them). A quiet cycle makes zero KMS decryptions.

"Changed" is more than the version number: a parameter deleted and created again starts over at
version 1, so a SecureString is decrypted again whenever its version, its LastModifiedDate or its
ciphertext (as listed without decryption) differs from the one held. A required `path` that lists
nothing is reported as missing (`EmptyPath`): an empty listing is far more often a typo or a
missing permission than a hierarchy that is meant to be empty.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiobotocore.session import AioSession

from agent.config import ParameterEntry, SourceConfig, entry_key
from agent.keys import key_under
from agent.metrics import Metrics
from agent.results import ParameterError, SourceError, empty_path_error
from agent.snapshot import SECRETS_MANAGER_PREFIX, SECURE_STRING, Parameter, Snapshot
from agent.sources.aws import ApiError as _ApiError
from agent.sources.aws import AwsClient, AwsSession
from agent.sources.aws import as_datetime as _as_datetime
from agent.sources.base import LoadResult
from agent.sources.parallel import CallGate, all_of

log = structlog.get_logger(__name__)

CHUNK = 10  # the most names GetParameters takes, and the most results a page holds
# The first load (nothing served yet, the pod waits) runs this many calls side by side: listing
# pages of several paths, GetParameters chunks, decryption chunks. Below the client's pool of 10
# connections. Later cycles make one call at a time: nobody waits on them, and the account's
# request quota is shared by every agent.
FIRST_LOAD_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class _Listed:
    """A parameter's metadata from a listing made without decryption."""

    request: str  # the name to ask for when decrypting (with selector for pinned names)
    key: str
    selector: str | None
    raw: dict[str, Any]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _unchanged(old: Parameter | None, item: _Listed) -> bool:
    """The held plaintext of `old` is still the value of the listed SecureString."""
    raw = item.raw
    return (
        old is not None
        and old.is_secure
        and old.version == int(raw.get("Version", 0))
        and old.selector == item.selector
        and old.last_modified == _as_datetime(raw.get("LastModifiedDate"))
        and old.encrypted_value is not None
        and old.encrypted_value == raw.get("Value")
    )


def _parameter(
    raw: dict[str, Any], key: str, selector: str | None, value: str, encrypted: str | None
) -> Parameter:
    return Parameter(
        name=raw["Name"],
        key=key,
        type=raw.get("Type", "String"),
        value=value,
        version=int(raw.get("Version", 0)),
        last_modified=_as_datetime(raw.get("LastModifiedDate")),
        arn=raw.get("ARN", ""),
        data_type=raw.get("DataType", "text"),
        selector=selector,
        encrypted_value=encrypted,
    )


class SsmSource:
    def __init__(
        self,
        cfg: SourceConfig,
        entries: Sequence[ParameterEntry],
        metrics: Metrics,
        session: AioSession | None = None,
        aws: AwsSession | None = None,
        list_by: str = "path",
        relist_every: int = 10,
    ) -> None:
        self._cfg = cfg
        # list_by "names": between listings, a path's names from its last listing are read with
        # GetParameters (higher throughput raises its quota; not GetParametersByPath's).
        self._list_by = list_by
        self._relist_every = relist_every
        self._by_name_cycles = 0  # cycles read by name since the last listing
        self._known: dict[tuple[str, bool], tuple[str, ...]] = {}  # path -> its names
        self._entries = tuple(entries)
        self._metrics = metrics
        self._aws = AwsClient("ssm", aws or AwsSession(cfg, session), metrics)
        self._session = self._aws.aws.session
        self._gate = CallGate(1)

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        async with self._gate:
            return await self._aws.call(operation, **kwargs)

    async def close(self) -> None:
        await self._aws.close()

    def set_budget(self, take: Callable[[], Awaitable[None]]) -> None:
        """Awaited before each SSM call: the agent's call budget (token bucket, splay)."""
        self._aws.before_call = take

    @property
    def aws_session(self) -> AwsSession:
        """The session (and credentials) this source calls with, for other clients (KMS)."""
        return self._aws.aws

    async def get_raw(self, names: Sequence[str], with_decryption: bool) -> list[dict[str, Any]]:
        """GetParameters for `names` (chunks of 10): the raw answers of those found. Raises
        ApiError/SourceError like every call. For fleet mode's key and per-name fetches."""
        found: list[dict[str, Any]] = []
        for chunk in _chunks(list(names)):
            resp = await self._call(
                "GetParameters", Names=list(chunk), WithDecryption=with_decryption
            )
            found.extend(resp.get("Parameters", []))
        return found

    # --- a cycle -----------------------------------------------------------------------------

    async def load(self, previous: Snapshot) -> LoadResult:
        stats = {"calls": 0, "decryptions": 0}
        errors: list[ParameterError] = []
        listed: dict[str, _Listed] = {}
        params: dict[str, Parameter] = {}
        # --- parallel first load (issue #15): a bound on calls in flight for this load
        self._gate = CallGate(FIRST_LOAD_CONCURRENCY if len(previous) == 0 else 1)
        paths = [e for e in self._entries if e.path is not None]
        by_name = (
            self._list_by == "names"
            and len(previous) > 0
            and self._by_name_cycles < self._relist_every - 1
        )
        self._by_name_cycles = self._by_name_cycles + 1 if by_name else 0
        listings = await all_of([self._list_entry(e, stats, by_name) for e in paths])
        for entry, (raws, error) in zip(paths, listings, strict=True):
            assert entry.path is not None
            if error is not None:
                errors.append(error)
            elif not raws and entry.required:
                self._metrics.parameter_not_found.inc()
                errors.append(empty_path_error(entry.path))
            for raw in raws:
                key = key_under(entry.path, raw["Name"])
                listed[raw["Name"]] = _Listed(raw["Name"], key, None, raw)
        # ---

        named = [e for e in self._entries if e.name is not None]
        plain = [e for e in named if not _is_secrets_manager(e)]
        secrets = [e for e in named if _is_secrets_manager(e)]
        found, missing = await self._get_named(plain, False, stats)
        errors.extend(missing)
        for entry, raw in found:
            listed[raw["Name"]] = _Listed(_request(entry), entry_key(entry), entry.selector, raw)
        # Secrets Manager references only answer with decryption, so they are read every cycle.
        found, missing = await self._get_named(secrets, True, stats)
        errors.extend(missing)
        for entry, raw in found:
            params[raw["Name"]] = _parameter(raw, entry_key(entry), None, raw["Value"], None)
            stats["decryptions"] += 1

        to_decrypt: list[_Listed] = []
        for name, item in listed.items():
            raw = item.raw
            if raw.get("Type") != SECURE_STRING:
                params[name] = _parameter(raw, item.key, item.selector, raw.get("Value", ""), None)
                continue
            old = previous.get(name)
            if old is not None and _unchanged(old, item):
                params[name] = _parameter(raw, item.key, item.selector, old.value, raw.get("Value"))
            else:
                to_decrypt.append(item)
        if to_decrypt:
            params.update(await self._decrypt(to_decrypt, stats, errors))
        return LoadResult(params, tuple(errors), stats["calls"], stats["decryptions"])

    async def _list_entry(
        self, entry: ParameterEntry, stats: dict[str, int], by_name: bool = False
    ) -> tuple[list[dict[str, Any]], ParameterError | None]:
        assert entry.path is not None
        where = (entry.path, entry.is_recursive)
        known = self._known.get(where)
        try:
            if by_name and known:
                try:
                    raws = await self._read_names(known, stats)
                except _ApiError as exc:
                    # Never worse than listing: a denied or throttled chunk lists the path.
                    log.info("list_by_names_fell_back", path=entry.path, error=exc.code)
                    raws = await self._list_path(entry.path, entry.is_recursive, stats)
            else:
                raws = await self._list_path(entry.path, entry.is_recursive, stats)
        except _ApiError as exc:
            self._known.pop(where, None)  # list it again next cycle
            return [], ParameterError(entry.path, exc.code, exc.message, entry.required, True)
        if self._list_by == "names":
            self._known[where] = tuple(raw["Name"] for raw in raws)
        return raws, None

    async def _read_names(
        self, names: Sequence[str], stats: dict[str, int]
    ) -> list[dict[str, Any]]:
        """A path's known names by GetParameters without decryption, chunks of 10, one at a
        time; names no longer found are gone (as a listing would not show them either)."""
        found: list[dict[str, Any]] = []
        for chunk in _chunks(list(names)):
            stats["calls"] += 1
            resp = await self._call("GetParameters", Names=list(chunk), WithDecryption=False)
            found.extend(resp.get("Parameters", []))
        return found

    async def _list_path(
        self, path: str, recursive: bool, stats: dict[str, int]
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Path": path,
                "Recursive": recursive,
                "WithDecryption": False,
                "MaxResults": CHUNK,
            }
            if token:
                kwargs["NextToken"] = token
            stats["calls"] += 1
            resp = await self._call("GetParametersByPath", **kwargs)
            found.extend(resp.get("Parameters", []))
            token = resp.get("NextToken")
            if not token:
                return found

    async def _get_named(
        self, entries: Sequence[ParameterEntry], decrypt: bool, stats: dict[str, int]
    ) -> tuple[list[tuple[ParameterEntry, dict[str, Any]]], list[ParameterError]]:
        """GetParameters in chunks of 10: (entry, raw) for those found, errors for the rest."""
        found: list[tuple[ParameterEntry, dict[str, Any]]] = []
        errors: list[ParameterError] = []
        chunks = list(_chunks(entries))
        for chunk_found, chunk_errors in await all_of(
            [self._get_chunk(chunk, decrypt, stats) for chunk in chunks]
        ):
            found.extend(chunk_found)
            errors.extend(chunk_errors)
        return found, errors

    async def _get_chunk(
        self, chunk: Sequence[ParameterEntry], decrypt: bool, stats: dict[str, int]
    ) -> tuple[list[tuple[ParameterEntry, dict[str, Any]]], list[ParameterError]]:
        found: list[tuple[ParameterEntry, dict[str, Any]]] = []
        errors: list[ParameterError] = []
        by_base = {e.name: e for e in chunk if e.name is not None}
        try:
            stats["calls"] += 1
            resp = await self._call(
                "GetParameters", Names=[_request(e) for e in chunk], WithDecryption=decrypt
            )
        except _ApiError as exc:
            if len(chunk) == 1:
                errors.append(_error_for(chunk[0], exc))
                return found, errors
            # One denied name fails the whole chunk: isolate it by asking one by one.
            for one in chunk:
                one_found, one_errors = await self._get_named([one], decrypt, stats)
                found.extend(one_found)
                errors.extend(one_errors)
            return found, errors
        for raw in resp.get("Parameters", []):
            entry: ParameterEntry | None = (
                by_base.pop(raw["Name"], None)
                or by_base.pop(raw.get("ARN", ""), None)
                # Secrets Manager references may come back named by the secret's id alone.
                or by_base.pop(SECRETS_MANAGER_PREFIX + raw["Name"], None)
            )
            if entry is not None:
                if _is_secrets_manager(entry):
                    raw = {**raw, "Name": entry.name}
                found.append((entry, raw))
        for e in by_base.values():
            self._metrics.parameter_not_found.inc()
            errors.append(
                ParameterError(
                    _request(e),
                    "ParameterNotFound",
                    "not found (or no such version/label)",
                    e.required,
                    name=e.name,
                )
            )
        return found, errors

    async def _decrypt(
        self, items: list[_Listed], stats: dict[str, int], errors: list[ParameterError]
    ) -> dict[str, Parameter]:
        params: dict[str, Parameter] = {}
        for chunk_params in await all_of(
            [self._decrypt_chunk(chunk, stats, errors) for chunk in _chunks(items)]
        ):
            params.update(chunk_params)
        return params

    async def _decrypt_chunk(
        self, chunk: Sequence[_Listed], stats: dict[str, int], errors: list[ParameterError]
    ) -> dict[str, Parameter]:
        params: dict[str, Parameter] = {}
        by_request = {i.request: i for i in chunk}
        by_name = {i.raw["Name"]: i for i in chunk}
        try:
            stats["calls"] += 1
            stats["decryptions"] += len(chunk)
            resp = await self._call("GetParameters", Names=list(by_request), WithDecryption=True)
        except _ApiError:
            # One bad key or grant fails the whole chunk: isolate the culprits one by one.
            for one in chunk:
                params.update(await self._decrypt_one(one, stats, errors))
            return params
        for raw in resp.get("Parameters", []):
            item: _Listed | None = by_name.pop(raw["Name"], None)
            if item is not None:
                listed_value = (
                    item.raw.get("Value") if item.raw.get("Version") == raw.get("Version") else None
                )
                params[raw["Name"]] = _parameter(
                    raw, item.key, item.selector, raw["Value"], listed_value
                )
        for item in by_name.values():
            errors.append(
                ParameterError(
                    item.request,
                    "ParameterNotFound",
                    "vanished while decrypting",
                    name=item.raw["Name"],
                )
            )
        return params

    async def _decrypt_one(
        self, item: _Listed, stats: dict[str, int], errors: list[ParameterError]
    ) -> dict[str, Parameter]:
        try:
            stats["calls"] += 1
            resp = await self._call("GetParameter", Name=item.request, WithDecryption=True)
        except _ApiError as exc:
            self._metrics.decrypt_failures.inc()
            errors.append(
                ParameterError(item.request, exc.code, exc.message, name=item.raw["Name"])
            )
            return {}
        raw = resp["Parameter"]
        listed_value = (
            item.raw.get("Value") if item.raw.get("Version") == raw.get("Version") else None
        )
        return {raw["Name"]: _parameter(raw, item.key, item.selector, raw["Value"], listed_value)}

    async def fetch(self, name: str) -> Parameter | None:
        """One parameter by name, for on-demand reads: 1 call, 2 for a SecureString."""
        try:
            raw = (await self._call("GetParameter", Name=name, WithDecryption=False))["Parameter"]
            encrypted: str | None = None
            if raw.get("Type") == SECURE_STRING:
                encrypted = raw.get("Value")
                raw = (await self._call("GetParameter", Name=name, WithDecryption=True))[
                    "Parameter"
                ]
        except _ApiError as exc:
            if exc.code == "ParameterNotFound" or exc.code == "ParameterVersionNotFound":
                return None
            raise SourceError(f"GetParameter {name}: {exc.code}") from None
        selector = raw.get("Selector")
        return _parameter(raw, name.lstrip("/"), selector, raw.get("Value", ""), encrypted)


def _is_secrets_manager(entry: ParameterEntry) -> bool:
    return bool(entry.name and entry.name.startswith(SECRETS_MANAGER_PREFIX))


def _request(entry: ParameterEntry) -> str:
    assert entry.name is not None
    return entry.name + (entry.selector or "")


def _error_for(entry: ParameterEntry, exc: _ApiError) -> ParameterError:
    return ParameterError(_request(entry), exc.code, exc.message, entry.required, name=entry.name)
