"""AWS Secrets Manager through aiobotocore, versions first.

A cycle lists the configured secrets' version ids without reading a value: `ListSecrets` with
`name` filters (up to 10 filter values a query, 100 secrets a page, `SecretVersionsToStages`)
for names and prefixes, `DescribeSecret` for ARNs (another account's secrets are not listed)
and for a configured name the listing did not return (ListSecrets is eventually consistent).
Each secret's wanted version (its `version_stage`, AWSCURRENT by default, or its `version_id`)
is compared with the snapshot; only versions not held are fetched: `BatchGetSecretValue` 20 a
call for AWSCURRENT, `GetSecretValue` by VersionId for pinned ones. A quiet cycle makes
ceil(S/100) listing calls and decrypts nothing.

Failures: a secret that is gone (not found, scheduled for deletion, its pinned version
removed) is removed from the set; any other per-secret failure (access denied, KMS) keeps its
last good value. Throttling, 5xx and network failures raise SourceError.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import structlog

from agent.config import SecretEntry, SourceConfig, secret_key
from agent.metrics import Metrics
from agent.results import ParameterError
from agent.snapshot import Parameter, Secret, Snapshot, epoch_seconds
from agent.sources.aws import ApiError, AwsClient, AwsSession, as_datetime
from agent.sources.base import LoadResult

log = structlog.get_logger(__name__)

LIST_PAGE = 100  # ListSecrets' largest page
FILTER_VALUES = 10  # values one ListSecrets name filter takes
BATCH = 20  # ids one BatchGetSecretValue takes
NOT_FOUND = "ResourceNotFoundException"
#: Codes that say the secret (or the version asked for) no longer exists: it is removed.
GONE_CODES = frozenset({NOT_FOUND, "InvalidRequestException"})
#: DescribeSecret's fields the agent keeps to answer DescribeSecret itself (never a value).
METADATA_KEYS = (
    "ARN",
    "Name",
    "Description",
    "KmsKeyId",
    "RotationEnabled",
    "RotationLambdaARN",
    "RotationRules",
    "LastRotatedDate",
    "LastChangedDate",
    "LastAccessedDate",
    "NextRotationDate",
    "Tags",
    "OwningService",
    "CreatedDate",
    "PrimaryRegion",
    "ReplicationStatus",
)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One secret version the config asks for, as the listing describes it."""

    entry: SecretEntry
    name: str
    arn: str
    version_id: str
    stages: tuple[str, ...]
    metadata: Mapping[str, Any]

    @property
    def ident(self) -> str:
        selector = self.entry.selector
        return self.name if selector is None else f"{self.name}|{selector}"


def _epoch(v: Any) -> Any:
    return epoch_seconds(as_datetime(v)) if isinstance(v, datetime) else v


def metadata_of(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """DescribeSecret's fields from a ListSecrets entry or a DescribeSecret answer: dates as
    epoch seconds, the version map as VersionIdsToStages, nulls left out."""
    kept: dict[str, Any] = {k: _epoch(raw[k]) for k in METADATA_KEYS if raw.get(k) is not None}
    versions = raw.get("SecretVersionsToStages") or raw.get("VersionIdsToStages") or {}
    kept["VersionIdsToStages"] = {v: list(stages) for v, stages in versions.items()}
    return MappingProxyType(kept)


def pick_version(
    entry: SecretEntry, versions: Mapping[str, Sequence[str]]
) -> tuple[str, tuple[str, ...]] | None:
    """The version id the entry asks for and its stages, or None when there is none."""
    if entry.version_id is not None:
        stages = versions.get(entry.version_id)
        return None if stages is None else (entry.version_id, tuple(stages))
    for version_id, stages in versions.items():
        if entry.stage in stages:
            return version_id, tuple(stages)
    return None


def secret_from(wanted: Wanted, raw: Mapping[str, Any]) -> Secret:
    """The Secret for a GetSecretValue-shaped answer `raw` (BatchGetSecretValue's too)."""
    return Secret(
        name=raw.get("Name", wanted.name),
        key=secret_key(wanted.entry, wanted.name),
        arn=raw.get("ARN", wanted.arn),
        version_id=raw.get("VersionId", wanted.version_id),
        version_stages=tuple(raw.get("VersionStages", wanted.stages)),
        created=as_datetime(raw.get("CreatedDate")),
        string=raw.get("SecretString"),
        binary=raw.get("SecretBinary"),
        selector=wanted.entry.selector,
        metadata=wanted.metadata,
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def entry_ident(entry: SecretEntry, name: str) -> str:
    return name if entry.selector is None else f"{name}|{entry.selector}"


def _filter_value(entry: SecretEntry) -> str:
    return entry.prefix if entry.prefix is not None else entry.id or ""


def entry_error(
    entry: SecretEntry,
    code: str,
    message: str,
    ident: str | None = None,
    *,
    keep: bool | None = None,
) -> ParameterError:
    """A failure of one entry; a gone secret (GONE_CODES) does not keep its last value."""
    subject = entry.prefix if entry.prefix is not None else (entry.id or "")
    if entry.selector is not None and entry.prefix is None:
        subject += f" ({entry.selector})"
    return ParameterError(
        subject,
        code,
        message,
        entry.required,
        is_path=entry.prefix is not None,
        name=ident if entry.prefix is None else None,
        secret=True,
        keep=code not in GONE_CODES if keep is None else keep,
    )


def wanted_error(w: Wanted, code: str, message: str) -> ParameterError:
    """A failure of one secret (also of one found under a prefix): it alone keeps its value."""
    subject = w.name if w.entry.selector is None else f"{w.name} ({w.entry.selector})"
    return ParameterError(
        subject,
        code,
        message,
        w.entry.required,
        name=w.ident,
        secret=True,
        keep=code not in GONE_CODES,
    )


class SecretsManagerSource:
    def __init__(
        self,
        cfg: SourceConfig,
        entries: Sequence[SecretEntry],
        metrics: Metrics,
        aws: AwsSession | None = None,
    ) -> None:
        self._entries = tuple(entries)
        self._metrics = metrics
        self._aws = AwsClient("secretsmanager", aws or AwsSession(cfg), metrics)

    async def close(self) -> None:
        await self._aws.close()

    async def fetch(self, name: str) -> Parameter | None:
        return None  # on-demand reads are for parameters

    def unavailable(self, reason: str, previous: Snapshot) -> list[ParameterError]:
        """Every entry failed (the service could not be reached): all keep their values."""
        return [
            entry_error(e, "SourceUnavailable", reason, self._held_ident(e, previous), keep=True)
            for e in self._entries
        ]

    # --- a cycle -----------------------------------------------------------------------------

    async def load(self, previous: Snapshot) -> LoadResult:
        stats = {"calls": 0, "decryptions": 0}
        errors: list[ParameterError] = []
        listed, failed = await self._list(stats, errors)
        wanted = await self._resolve(listed, failed, previous, stats, errors)

        secrets: dict[str, Secret] = {}
        to_fetch: list[Wanted] = []
        for w in wanted:
            old = previous.secrets.get(w.ident)
            if old is not None and old.version_id == w.version_id:
                secrets[w.ident] = Secret(
                    name=w.name,
                    key=secret_key(w.entry, w.name),
                    arn=w.arn,
                    version_id=w.version_id,
                    version_stages=w.stages,
                    created=old.created,
                    string=old.string,
                    binary=old.binary,
                    selector=w.entry.selector,
                    metadata=w.metadata,
                )
            else:
                to_fetch.append(w)
        current = [w for w in to_fetch if w.entry.selector is None]
        pinned = [w for w in to_fetch if w.entry.selector is not None]
        for chunk in _chunks(current, BATCH):
            secrets.update(await self._batch(chunk, stats, errors))
        for w in pinned:
            found = await self._get_one(w, stats, errors, version_id=w.version_id)
            if found is not None:
                secrets[w.ident] = found
        return LoadResult({}, tuple(errors), stats["calls"], stats["decryptions"], secrets=secrets)

    # --- listing: version ids, no values -------------------------------------------------------

    async def _list(
        self, stats: dict[str, int], errors: list[ParameterError]
    ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Name -> ListSecrets entry for every name and prefix entry, and the filter values
        whose listing failed (an error each; their secrets keep their values)."""
        listed: dict[str, dict[str, Any]] = {}
        failed: set[str] = set()
        values = list(dict.fromkeys(_filter_value(e) for e in self._entries if not e.is_arn))
        for group in _chunks(values, FILTER_VALUES):
            try:
                for raw in await self._list_group(list(group), stats):
                    listed[raw["Name"]] = raw
            except ApiError as exc:
                self._failed(exc.code)
                failed.update(group)
                for e in self._entries:
                    if not e.is_arn and _filter_value(e) in group:
                        ident = None if e.prefix is not None else entry_ident(e, _filter_value(e))
                        errors.append(entry_error(e, exc.code, exc.message, ident, keep=True))
        return listed, failed

    async def _list_group(self, values: list[str], stats: dict[str, int]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Filters": [{"Key": "name", "Values": values}],
                "MaxResults": LIST_PAGE,
            }
            if token:
                kwargs["NextToken"] = token
            stats["calls"] += 1
            resp = await self._aws.call("ListSecrets", **kwargs)
            found.extend(resp.get("SecretList", []))
            token = resp.get("NextToken")
            if not token:
                return found

    async def _resolve(
        self,
        listed: dict[str, dict[str, Any]],
        failed: set[str],
        previous: Snapshot,
        stats: dict[str, int],
        errors: list[ParameterError],
    ) -> list[Wanted]:
        """The version each entry wants, from the listing (or DescribeSecret)."""
        wanted: list[Wanted] = []
        for e in self._entries:
            if not e.is_arn and _filter_value(e) in failed:
                continue
            if e.prefix is not None:
                names = sorted(n for n in listed if n.startswith(e.prefix))
                if not names and e.required:
                    errors.append(entry_error(e, NOT_FOUND, "no secret is listed under it"))
                for name in names:
                    wanted.extend(self._want(e, listed[name], errors))
                continue
            assert e.id is not None
            raw = listed.get(e.id) if not e.is_arn else None
            if raw is None:
                raw = await self._describe(e, previous, stats, errors)
            if raw is not None:
                wanted.extend(self._want(e, raw, errors))
        return wanted

    def _want(
        self, e: SecretEntry, raw: Mapping[str, Any], errors: list[ParameterError]
    ) -> list[Wanted]:
        metadata = metadata_of(raw)
        picked = pick_version(e, metadata["VersionIdsToStages"])
        name = str(raw["Name"])
        if picked is None:
            what = f"version {e.version_id}" if e.version_id else f"staging label {e.stage}"
            errors.append(entry_error(e, NOT_FOUND, f"{name} has no {what}", entry_ident(e, name)))
            return []
        return [Wanted(e, name, str(raw.get("ARN", "")), picked[0], picked[1], metadata)]

    async def _describe(
        self,
        e: SecretEntry,
        previous: Snapshot,
        stats: dict[str, int],
        errors: list[ParameterError],
    ) -> dict[str, Any] | None:
        assert e.id is not None
        ident = self._held_ident(e, previous)
        try:
            stats["calls"] += 1
            raw = await self._aws.call("DescribeSecret", SecretId=e.id)
        except ApiError as exc:
            self._failed(exc.code)
            errors.append(entry_error(e, exc.code, exc.message, ident))
            return None
        if raw.get("DeletedDate") is not None:
            errors.append(entry_error(e, NOT_FOUND, "scheduled for deletion", ident))
            return None
        return raw

    def _held_ident(self, e: SecretEntry, previous: Snapshot) -> str:
        """The ident the entry's secret is held under (an ARN entry's name comes from AWS)."""
        if e.prefix is not None:
            return e.prefix
        assert e.id is not None
        if e.is_arn:
            for s in previous.secrets.values():
                if s.selector == e.selector and e.id in (s.arn, s.arn[:-7]):
                    return s.ident
        return entry_ident(e, e.id)

    # --- fetching: values, only for versions not held ----------------------------------------

    async def _batch(
        self, chunk: Sequence[Wanted], stats: dict[str, int], errors: list[ParameterError]
    ) -> dict[str, Secret]:
        by_arn = {w.arn: w for w in chunk}
        by_name = {w.name: w for w in chunk}
        try:
            stats["calls"] += 1
            resp = await self._aws.call("BatchGetSecretValue", SecretIdList=list(by_arn))
        except ApiError:
            # One denied secret (or no batch permission) fails the whole call: one by one.
            found: dict[str, Secret] = {}
            for w in chunk:
                one = await self._get_one(w, stats, errors)
                if one is not None:
                    found[w.ident] = one
            return found
        secrets: dict[str, Secret] = {}
        for raw in resp.get("SecretValues", []):
            got = by_arn.get(raw.get("ARN", "")) or by_name.get(raw.get("Name", ""))
            if got is None:
                continue
            by_arn.pop(got.arn, None)
            stats["decryptions"] += 1
            secrets[got.ident] = secret_from(got, raw)
        for err in resp.get("Errors", []):
            failed = by_arn.pop(err.get("SecretId", ""), None)
            if failed is not None:
                code = str(err.get("ErrorCode", "Unknown"))
                self._failed(code)
                message = str(err.get("Message", ""))
                errors.append(wanted_error(failed, code, message))
        for w in by_arn.values():
            errors.append(wanted_error(w, NOT_FOUND, "vanished while fetching"))
        return secrets

    async def _get_one(
        self,
        w: Wanted,
        stats: dict[str, int],
        errors: list[ParameterError],
        version_id: str | None = None,
    ) -> Secret | None:
        kwargs: dict[str, Any] = {"SecretId": w.arn or w.name}
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            stats["calls"] += 1
            raw = await self._aws.call("GetSecretValue", **kwargs)
        except ApiError as exc:
            self._failed(exc.code)
            errors.append(wanted_error(w, exc.code, exc.message))
            return None
        stats["decryptions"] += 1
        return secret_from(w, raw)

    def _failed(self, code: str) -> None:
        self._metrics.secret_failures.labels(code=code).inc()
