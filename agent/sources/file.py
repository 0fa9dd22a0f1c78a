"""A local TOML file of parameters, for development and demos without an AWS account.

    "/myapp/dev/db/url" = "postgres://localhost/app"
    "/myapp/dev/db/password" = { value = "dev-only", type = "SecureString" }

A table with a `value` key is one parameter; any other table is a level of the hierarchy, so
`[myapp.dev]` followed by `"db/url" = "..."` names `/myapp/dev/db/url`. Each change of a value or
type raises that parameter's version, as an Overwrite would in SSM.

The top-level table `[secrets]` holds Secrets Manager secrets for `[[secrets]]` entries, by
name: a string is the SecretString; a table is a JSON secret (its fields, JSON-encoded):

    [secrets]
    "dev/db" = { username = "app", password = "dev-only", host = "localhost" }

Each change gives the secret a new VersionId (staged AWSCURRENT), as PutSecretValue would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tomllib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.config import ParameterEntry, SecretEntry, entry_key, secret_key
from agent.dirwatch import watch_file
from agent.keys import key_under
from agent.results import ParameterError, SourceError, empty_path_error
from agent.snapshot import AWSCURRENT, SECURE_STRING, Parameter, Secret, Snapshot, epoch_seconds
from agent.sources.base import LoadResult

SECRETS_TABLE = "secrets"

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


@dataclass(frozen=True, slots=True)
class _SecretEntry:
    value: str
    version_id: str
    created: datetime


def _secret_values(table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise SourceError(f"[{SECRETS_TABLE}] must be a table of secret name = value")
    out: dict[str, str] = {}
    for name, v in table.items():
        if isinstance(v, str):
            out[name] = v
        elif isinstance(v, dict):
            out[name] = json.dumps(v, default=str)
        else:
            raise SourceError(f"secret {name}: expected a string or a table of fields")
    return out


def _local_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:local:000000000000:secret:{name}-local0"


class FileSource:
    def __init__(
        self,
        path: Path,
        entries: Sequence[ParameterEntry],
        secret_entries: Sequence[SecretEntry] = (),
    ) -> None:
        self.path = path
        self._abs_path = path.absolute()
        self._entries = tuple(entries)
        self._secret_entries = tuple(secret_entries)
        self._known: dict[str, _Entry] = {}
        self._known_secrets: dict[str, _SecretEntry] = {}
        self._secrets: dict[str, _SecretEntry] = {}
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
        self._secrets = self._read_secrets(_secret_values(data.pop(SECRETS_TABLE, {})), previous)
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

    def _read_secrets(
        self, values: dict[str, str], previous: Snapshot | None
    ) -> dict[str, _SecretEntry]:
        now = datetime.now(UTC)
        known: dict[str, _SecretEntry] = {}
        for name, value in values.items():
            old = self._known_secrets.get(name)
            if old is None and previous is not None and name in previous.secrets:
                held = previous.secrets[name]
                old = _SecretEntry(held.text, held.version_id, held.created)
            if old is not None and old.value == value:
                known[name] = old
            else:
                known[name] = _SecretEntry(value, str(uuid.uuid4()), now)
        self._known_secrets = known
        return known

    def _load_secrets(self, errors: list[ParameterError]) -> dict[str, Secret]:
        secrets: dict[str, Secret] = {}
        for entry in self._secret_entries:
            if entry.prefix is not None:
                names = [n for n in self._secrets if n.startswith(entry.prefix)]
            else:
                assert entry.id is not None
                names = [n for n in self._secrets if entry.id in (n, _local_arn(n))]
            held = [
                n
                for n in names
                if entry.stage == AWSCURRENT or entry.version_id == self._secrets[n].version_id
            ]
            if not held and (entry.required or entry.prefix is None):
                subject = entry.prefix if entry.prefix is not None else entry.id or ""
                reason = f"not in [{SECRETS_TABLE}] of {self.path.name}"
                if names:
                    reason = "the local file holds only the AWSCURRENT version"
                errors.append(
                    ParameterError(
                        subject,
                        "ResourceNotFoundException",
                        reason,
                        entry.required,
                        is_path=entry.prefix is not None,
                        secret=True,
                        keep=False,
                    )
                )
            for name in held:
                e = self._secrets[name]
                s = Secret(
                    name=name,
                    key=secret_key(entry, name),
                    arn=_local_arn(name),
                    version_id=e.version_id,
                    version_stages=(AWSCURRENT,),
                    created=e.created,
                    string=e.value,
                    selector=entry.selector,
                    metadata=MappingProxyType(
                        {
                            "ARN": _local_arn(name),
                            "Name": name,
                            "LastChangedDate": epoch_seconds(e.created),
                            "VersionIdsToStages": {e.version_id: [AWSCURRENT]},
                        }
                    ),
                )
                secrets[s.ident] = s
        return secrets

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
        secrets = self._load_secrets(errors)
        return LoadResult(params, tuple(errors), secrets=secrets)

    async def fetch(self, name: str) -> Parameter | None:
        e = self._read().get(name)
        return None if e is None else self._parameter(name, e, name.lstrip("/"), None)

    async def changes(self) -> AsyncIterator[None]:
        """Yields after each change of the file (saved by rename or swapped in a ConfigMap
        volume included)."""
        async for _ in watch_file(self._abs_path):
            yield

    async def close(self) -> None:
        return None
