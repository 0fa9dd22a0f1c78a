"""Immutable parameter values and the snapshot that holds one complete set of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

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


@dataclass(frozen=True, slots=True)
class Change:
    added: tuple[VersionChange, ...] = ()
    updated: tuple[VersionChange, ...] = ()
    removed: tuple[VersionChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def all(self) -> tuple[VersionChange, ...]:
        return self.added + self.updated + self.removed

    def summary(self) -> dict[str, list[dict[str, object]]]:
        """Names and versions only: safe to log and to return over HTTP."""

        def rows(items: tuple[VersionChange, ...]) -> list[dict[str, object]]:
            return [
                {"name": c.name, "old_version": c.old_version, "new_version": c.new_version}
                for c in items
            ]

        return {
            "added": rows(self.added),
            "updated": rows(self.updated),
            "removed": rows(self.removed),
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Snapshot:
    """A complete, immutable set of parameters keyed by name. Replaced whole, never mutated."""

    parameters: Mapping[str, Parameter] = field(default_factory=lambda: MappingProxyType({}))
    loaded_at: datetime = field(default_factory=_utcnow)
    generation: int = 0

    @classmethod
    def build(cls, params: Mapping[str, Parameter], generation: int) -> Snapshot:
        return cls(MappingProxyType(dict(sorted(params.items()))), _utcnow(), generation)

    def __len__(self) -> int:
        return len(self.parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters.values())

    def get(self, name: str) -> Parameter | None:
        return self.parameters.get(name)

    def by_key(self) -> dict[str, Parameter]:
        return {p.key: p for p in self.parameters.values()}

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
        return Change(tuple(added), tuple(updated), tuple(removed))


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


def matches_selector(p: Parameter, selector: str | None) -> bool:
    """True when the served parameter is what `selector` (":3" or ":label") asks for."""
    if selector is None or selector == p.selector:
        return True
    tail = selector[1:]
    return tail.isdigit() and int(tail) == p.version
