"""A local TOML file of parameters, for development and demos without an AWS account.

    "/myapp/dev/db/url" = "postgres://localhost/app"
    "/myapp/dev/db/password" = { value = "dev-only", type = "SecureString" }

A table with a `value` key is one parameter; any other table is a level of the hierarchy, so
`[myapp.dev]` followed by `"db/url" = "..."` names `/myapp/dev/db/url`. Each change of a value or
type raises that parameter's version, as an Overwrite would in SSM.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import tomllib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import watchfiles

from agent.config import ParameterEntry, entry_key
from agent.keys import key_under
from agent.results import ParameterError, SourceError, empty_path_error
from agent.snapshot import SECURE_STRING, Parameter, Snapshot
from agent.sources.base import LoadResult

TYPES = ("String", "StringList", SECURE_STRING)
# Stands in for SSM's ciphertext: the plaintext must not be what "no decryption" returns. One per
# process, so a FileSource rebuilt by a reload masks an unchanged value the same way.
_MASK_KEY = os.urandom(16)


@dataclass(frozen=True, slots=True)
class _Entry:
    value: str
    type: str
    version: int
    modified: datetime


def _flatten(table: dict[str, Any], prefix: str, out: dict[str, tuple[str, str]]) -> None:
    for k, v in table.items():
        name = f"{prefix}/{k.strip('/')}" if prefix else k
        if isinstance(v, dict) and "value" in v:
            extra = set(v) - {"value", "type"}
            kind = v.get("type", "String")
            if extra or not isinstance(v["value"], str) or kind not in TYPES:
                raise SourceError(f'{name}: expected {{value = "...", type = {"|".join(TYPES)}}}')
            out[name] = (v["value"], kind)
        elif isinstance(v, dict):
            _flatten(v, "/" + name.strip("/"), out)
        elif isinstance(v, str):
            out[name] = (v, "String")
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[name] = (",".join(v), "StringList")
        else:
            raise SourceError(f"{name}: a value must be a string, a list of strings or a table")


def _from_snapshot(snapshot: Snapshot | None, name: str) -> _Entry | None:
    """What a fresh FileSource (after a config reload) knows of `name`: the served version."""
    p = snapshot.get(name) if snapshot is not None else None
    return None if p is None else _Entry(p.value, p.type, p.version, p.last_modified)


class FileSource:
    def __init__(self, path: Path, entries: Sequence[ParameterEntry]) -> None:
        self.path = path
        self._abs_path = path.absolute()
        self._entries = tuple(entries)
        self._known: dict[str, _Entry] = {}
        self._mask_key = _MASK_KEY

    def _read(self, previous: Snapshot | None = None) -> dict[str, _Entry]:
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SourceError(f"{self.path}: not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{self.path}: cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SourceError(f"{self.path}: invalid TOML: {exc}") from None
        flat: dict[str, tuple[str, str]] = {}
        _flatten(data, "", flat)
        now = datetime.now(UTC)
        known: dict[str, _Entry] = {}
        for name, (value, kind) in flat.items():
            old = self._known.get(name) or _from_snapshot(previous, name)
            if old is not None and (old.value, old.type) == (value, kind):
                known[name] = old
            else:
                known[name] = _Entry(value, kind, (old.version + 1) if old else 1, now)
        # A deleted name keeps its version history, as SSM would not (it restarts at 1);
        # keeping it means a re-added name is seen as changed.
        self._known = {**{n: e for n, e in self._known.items() if n not in known}, **known}
        return known

    def _parameter(self, name: str, e: _Entry, key: str, selector: str | None) -> Parameter:
        encrypted = None
        if e.type == SECURE_STRING:
            mac = hmac.new(self._mask_key, e.value.encode(), hashlib.sha256).digest()
            encrypted = base64.b64encode(b"local-file:" + mac).decode()
        return Parameter(
            name=name,
            key=key,
            type=e.type,
            value=e.value,
            version=e.version,
            last_modified=e.modified,
            arn=f"arn:aws:ssm:local:000000000000:parameter/{name.lstrip('/')}",
            selector=selector,
            encrypted_value=encrypted,
        )

    async def load(self, previous: Snapshot) -> LoadResult:
        current = self._read(previous)
        params: dict[str, Parameter] = {}
        errors: list[ParameterError] = []
        for entry in self._entries:
            if entry.path is not None:
                prefix = entry.path.rstrip("/") + "/"
                listed = 0
                for name, e in current.items():
                    rest = name[len(prefix) :] if name.startswith(prefix) else None
                    if prefix == "/":
                        rest = name.lstrip("/")
                    if rest and (entry.is_recursive or "/" not in rest):
                        params[name] = self._parameter(name, e, key_under(entry.path, name), None)
                        listed += 1
                if not listed and entry.required:
                    errors.append(empty_path_error(entry.path))
                continue
            assert entry.name is not None
            found = current.get(entry.name)
            pinned_elsewhere = entry.version not in (None, found and found.version)
            if found is None or entry.label is not None or pinned_elsewhere:
                errors.append(
                    ParameterError(
                        entry.name + (entry.selector or ""),
                        "ParameterNotFound",
                        f"not in {self.path.name}" if found is None else "no such version or label",
                        entry.required,
                        name=entry.name,
                    )
                )
                continue
            key = entry_key(entry)
            params[entry.name] = self._parameter(entry.name, found, key, entry.selector)
        return LoadResult(params, tuple(errors))

    async def fetch(self, name: str) -> Parameter | None:
        e = self._read().get(name)
        return None if e is None else self._parameter(name, e, name.lstrip("/"), None)

    async def changes(self) -> AsyncIterator[None]:
        """Yields after each edit of the file (editors that replace it by rename included)."""
        target = self._abs_path
        async for batch in watchfiles.awatch(target.parent, debounce=50, step=20):
            if any(Path(p) == target for _, p in batch):
                yield

    async def close(self) -> None:
        return None
