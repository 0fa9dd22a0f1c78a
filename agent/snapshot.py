"""Immutable parameter values and the snapshot that holds one complete set of them."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

SECURE_STRING = "SecureString"
#: Parameter Store names under this prefix are Secrets Manager secrets read through SSM.
SECRETS_MANAGER_PREFIX = "/aws/reference/secretsmanager/"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter as served. `value` is always the plaintext; it never appears in repr()."""

    name: str
    key: str
    type: str
    value: str = field(repr=False)
    version: int
    last_modified: datetime
    arn: str = ""
    data_type: str = "text"
    selector: str | None = None
    # The SecureString value as SSM returns it without decryption; None for other types.
    encrypted_value: str | None = field(default=None, repr=False)

    @property
    def is_secure(self) -> bool:
        return self.type == SECURE_STRING

    def value_for(self, with_decryption: bool) -> str:
        """What SSM answers for this parameter with or without WithDecryption."""
        if self.is_secure and not with_decryption:
            return self.encrypted_value if self.encrypted_value is not None else ""
        return self.value


@dataclass(frozen=True, slots=True)
class VersionChange:
    name: str
    old_version: int | None
    new_version: int | None


# --- Secrets Manager secrets (served beside parameters; see docs/secrets-manager.md) -------

AWSCURRENT = "AWSCURRENT"


def epoch_seconds(moment: datetime) -> int | float:
    """A timestamp as Secrets Manager's JSON carries it: epoch seconds, to the millisecond
    (whole seconds as an integer, as moto sends them and SDKs and the CLI print them)."""
    seconds = round(moment.timestamp(), 3)
    return int(seconds) if seconds.is_integer() else seconds


@dataclass(frozen=True, slots=True, eq=False)
class Secret:
    """One Secrets Manager secret version as served. Values never appear in repr().

    `selector` says which version the config asked for: None for AWSCURRENT, `stage:LABEL` or
    `version:ID`. `metadata` holds DescribeSecret's fields (dates as epoch seconds), no value.
    """

    name: str
    key: str
    arn: str
    version_id: str
    version_stages: tuple[str, ...]
    created: datetime  # the version's CreatedDate
    string: str | None = field(default=None, repr=False)
    binary: bytes | None = field(default=None, repr=False)
    selector: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ident(self) -> str:
        """The secret's place in Snapshot.secrets: its name, plus the selector when pinned."""
        return self.name if self.selector is None else f"{self.name}|{self.selector}"

    @property
    def data(self) -> bytes:
        """The bytes written to files: the SecretString as UTF-8, or the SecretBinary."""
        if self.string is not None:
            return self.string.encode("utf-8")
        return self.binary or b""

    @property
    def text(self) -> str:
        """The value as text (templates, env, dotenv): the SecretString, else base64 of the
        SecretBinary (as the SDKs' JSON protocol carries it)."""
        if self.string is not None:
            return self.string
        return base64.b64encode(self.binary or b"").decode()

    def fields(self) -> dict[str, str] | None:
        """A JSON-object SecretString's fields as text (strings as they are, null as "",
        other values as JSON), or None when the secret is not a JSON object."""
        if self.string is None or not self.string.lstrip().startswith("{"):
            return None
        try:
            parsed = json.loads(self.string)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        return {str(k): _field_text(v) for k, v in parsed.items()}

    def same_version(self, other: Secret) -> bool:
        mine = (self.version_id, self.version_stages, self.string, self.binary, self.key)
        return mine == (
            other.version_id,
            other.version_stages,
            other.string,
            other.binary,
            other.key,
        )


def _field_text(v: object) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class SecretChange:
    kind: str  # "added" | "updated" | "removed"
    name: str
    selector: str | None
    old_version_id: str | None
    new_version_id: str | None


@dataclass(frozen=True, slots=True)
class Change:
    added: tuple[VersionChange, ...] = ()
    updated: tuple[VersionChange, ...] = ()
    removed: tuple[VersionChange, ...] = ()
    secrets: tuple[SecretChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.secrets)

    def all(self) -> tuple[VersionChange, ...]:
        return self.added + self.updated + self.removed

    def summary(self) -> dict[str, list[dict[str, object]]]:
        """Names and versions only: safe to log and to return over HTTP."""

        def rows(items: tuple[VersionChange, ...]) -> list[dict[str, object]]:
            return [
                {"name": c.name, "old_version": c.old_version, "new_version": c.new_version}
                for c in items
            ]

        out: dict[str, list[dict[str, object]]] = {
            "added": rows(self.added),
            "updated": rows(self.updated),
            "removed": rows(self.removed),
        }
        if self.secrets:  # present only when secrets changed (names and version ids only)
            out["secrets"] = [
                {
                    "change": c.kind,
                    "name": c.name,
                    "old_version_id": c.old_version_id,
                    "new_version_id": c.new_version_id,
                }
                for c in self.secrets
            ]
        return out


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Snapshot:
    """A complete, immutable set of parameters keyed by name. Replaced whole, never mutated."""

    parameters: Mapping[str, Parameter] = field(default_factory=lambda: MappingProxyType({}))
    loaded_at: datetime = field(default_factory=_utcnow)
    generation: int = 0
    #: Secrets Manager secrets by `Secret.ident`; not counted by len() nor iterated.
    secrets: Mapping[str, Secret] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        params: Mapping[str, Parameter],
        generation: int,
        secrets: Mapping[str, Secret] | None = None,
    ) -> Snapshot:
        held = MappingProxyType(dict(sorted((secrets or {}).items())))
        return cls(MappingProxyType(dict(sorted(params.items()))), _utcnow(), generation, held)

    def __len__(self) -> int:
        return len(self.parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters.values())

    def get(self, name: str) -> Parameter | None:
        return self.parameters.get(name)

    def by_key(self) -> dict[str, Parameter]:
        return {p.key: p for p in self.parameters.values()}

    def values_by_key(self) -> dict[str, str]:
        """key -> value of every parameter and secret (a binary secret as base64)."""
        values = {p.key: p.value for p in self.parameters.values()}
        values.update({s.key: s.text for s in self.secrets.values()})
        return values

    def under(self, path: str, recursive: bool = True) -> list[Parameter]:
        """Parameters whose name lies under `path` ("/" matches all)."""
        prefix = path.rstrip("/") + "/"
        found = []
        for p in self.parameters.values():
            if not p.name.startswith(prefix) and prefix != "/":
                continue
            rest = p.name[len(prefix) :] if prefix != "/" else p.name.lstrip("/")
            if recursive or "/" not in rest:
                found.append(p)
        return found

    def diff(self, new: Snapshot) -> Change:
        """What changed going from self to `new`, by name."""
        added, updated, removed = [], [], []
        for name, p in new.parameters.items():
            old = self.parameters.get(name)
            if old is None:
                added.append(VersionChange(name, None, p.version))
            elif _differs(old, p):
                updated.append(VersionChange(name, old.version, p.version))
        for name, old in self.parameters.items():
            if name not in new.parameters:
                removed.append(VersionChange(name, old.version, None))
        return Change(tuple(added), tuple(updated), tuple(removed), _secret_diff(self, new))


def _secret_diff(old: Snapshot, new: Snapshot) -> tuple[SecretChange, ...]:
    changes = []
    for ident, s in new.secrets.items():
        was = old.secrets.get(ident)
        if was is None:
            changes.append(SecretChange("added", s.name, s.selector, None, s.version_id))
        elif not was.same_version(s):
            changes.append(
                SecretChange("updated", s.name, s.selector, was.version_id, s.version_id)
            )
    for ident, was in old.secrets.items():
        if ident not in new.secrets:
            changes.append(SecretChange("removed", was.name, was.selector, was.version_id, None))
    return tuple(changes)


def _differs(old: Parameter, new: Parameter) -> bool:
    """A change of the parameter, whatever its version number says.

    The value is compared because Secrets Manager references keep version 0 forever. The
    LastModifiedDate and the ciphertext are compared because a parameter deleted and created
    again starts over at version 1: same number, another parameter. A ciphertext counts only when
    both sides know it.
    """
    if (old.version, old.type, old.selector, old.value) != (
        new.version,
        new.type,
        new.selector,
        new.value,
    ):
        return True
    if old.name.startswith(SECRETS_MANAGER_PREFIX):
        return False  # fetched by value every cycle; the value alone says whether it changed
    if old.last_modified != new.last_modified:
        return True
    known = old.encrypted_value is not None and new.encrypted_value is not None
    return known and old.encrypted_value != new.encrypted_value


# --- finding what a request names in a snapshot ------------------------------------------


def split_selector(requested: str) -> tuple[str, str | None]:
    """`/a/b:3` -> (`/a/b`, `:3`); ARNs keep their colons: only the part after `parameter/` counts.

    SSM names cannot contain ":", so the last colon of the name part starts the selector.
    """
    head = ""
    rest = requested
    if requested.startswith("arn:"):
        parts = requested.split(":", 5)
        if len(parts) == 6:
            head = ":".join(parts[:5]) + ":"
            rest = parts[5]
    name, sep, selector = rest.rpartition(":")
    if not sep or not name:
        return requested, None
    return head + name, ":" + selector


def find_served(snapshot: Snapshot, name: str) -> Parameter | None:
    """By name; an ARN finds the parameter it names; `foo` also finds `/foo` and back."""
    if name.startswith("arn:"):
        _, sep, tail = name.partition(":parameter/")
        if not sep:
            return None
        for candidate in ("/" + tail, tail):
            p = snapshot.get(candidate)
            if p is not None and (not p.arn or p.arn == name):
                return p
        return None
    p = snapshot.get(name)
    if p is None:
        p = snapshot.get(name[1:] if name.startswith("/") else "/" + name)
    return p


def version_number(text: str) -> int | None:
    """`"3"` -> 3; None for anything that is not ASCII digits (`"²"` is a digit to
    str.isdigit() but not to int(); SSM versions are plain decimal numbers)."""
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)


_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,100}", re.ASCII)


def selector_problem(selector: str) -> str | None:
    """Why `selector` (":3", ":label") can name no version, or None when it can."""
    tail = selector[1:]
    if not tail:
        return "an empty selector after ':' (a version number or label)"
    if tail.isascii() and tail.isdigit():
        return None
    if _LABEL.fullmatch(tail) is None:
        return f"{tail!r} is neither a version number nor a label (letters, digits, . _ -)"
    return None


def matches_selector(p: Parameter, selector: str | None) -> bool:
    """True when the served parameter is what `selector` (":3" or ":label") asks for."""
    if selector is None or selector == p.selector:
        return True
    return version_number(selector[1:]) == p.version


def find_secret(snapshot: Snapshot, secret_id: str) -> list[Secret]:
    """Every held version of the secret `secret_id` names: a name, a full ARN or a partial ARN
    (without the random 6-character suffix Secrets Manager adds), as Secrets Manager resolves it."""
    found = [s for s in snapshot.secrets.values() if secret_id in (s.name, s.arn)]
    if found or not secret_id.startswith("arn:"):
        return found
    return [s for s in snapshot.secrets.values() if s.arn and _partial_arn(s.arn) == secret_id]


def _partial_arn(arn: str) -> str:
    """`arn:...:secret:prod/db-AbCdEf` -> `arn:...:secret:prod/db`."""
    head, dash, suffix = arn.rpartition("-")
    return head if dash and len(suffix) == 6 else arn


def select_version(held: list[Secret], version_id: str | None, stage: str | None) -> Secret | None:
    """The held version that a GetSecretValue with these arguments answers (AWSCURRENT when
    neither is given; both must name the same version when both are)."""
    wanted_stage = stage if stage is not None or version_id is not None else AWSCURRENT
    for s in held:
        if version_id is not None and s.version_id != version_id:
            continue
        if wanted_stage is not None and wanted_stage not in s.version_stages:
            continue
        return s
    return None
