"""Fleet records: one parameter's state as the watcher saw it, signed with the fleet key.

A record carries what SSM returns WITHOUT decryption: a String's value, a SecureString's KMS
ciphertext (never its plaintext). Its order is (LastModifiedDate, version, deleted): a parameter
deleted and created again starts again at version 1 but has a later LastModifiedDate, and the
deletion of a version sorts after that version. The MAC is HMAC-SHA256 over a canonical encoding
(JSON, sorted keys, no spaces, UTF-8) prefixed by a domain tag and the fleet's scope, so a record
of one fleet (or a meta entry) is never valid as another thing elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from agent.snapshot import SECURE_STRING, Parameter

RECORD_DOMAIN = b"ssm-sidecar/fleet-record/v1"
META_DOMAIN = b"ssm-sidecar/fleet-meta/v1"
MIN_KEY_LENGTH = 16


class RefusedRecord(Exception):
    """A record (or meta entry) that is malformed or whose MAC does not verify."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    key: str
    type: str
    value: str = ""  # String/StringList: the value; SecureString: the base64 ciphertext
    version: int = 0
    last_modified: float = 0.0  # unix seconds (SSM gives milliseconds)
    arn: str = ""
    data_type: str = "text"
    selector: str | None = None
    deleted: bool = False

    def __repr__(self) -> str:  # the value stays out of logs even when it is a String
        return f"Record({self.name!r}, v{self.version}, deleted={self.deleted})"

    @property
    def is_secure(self) -> bool:
        return self.type == SECURE_STRING

    @property
    def order(self) -> tuple[float, int, int]:
        return (self.last_modified, self.version, int(self.deleted))

    def deletion(self) -> Record:
        """The record that says this version is gone."""
        return Record(
            self.name,
            self.key,
            self.type,
            "",
            self.version,
            self.last_modified,
            self.arn,
            self.data_type,
            self.selector,
            True,
        )

    def parameter(self, value: str) -> Parameter:
        """The served parameter, `value` being the plaintext (decrypted for a SecureString)."""
        return Parameter(
            name=self.name,
            key=self.key,
            type=self.type,
            value=value,
            version=self.version,
            last_modified=datetime.fromtimestamp(self.last_modified, UTC),
            arn=self.arn,
            data_type=self.data_type,
            selector=self.selector,
            encrypted_value=self.value if self.is_secure else None,
        )


def record_of(p: Parameter) -> Record | None:
    """The record of a parameter as loaded; None for a SecureString whose ciphertext is not known
    (SSM answered a newer version while decrypting: the next cycle publishes it)."""
    if p.is_secure:
        if not p.encrypted_value:
            return None
        value = p.encrypted_value
    else:
        value = p.value
    return Record(
        p.name,
        p.key,
        p.type,
        value,
        p.version,
        round(p.last_modified.timestamp(), 3),
        p.arn,
        p.data_type,
        p.selector,
    )


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(key: bytes, domain: bytes, scope: str, body: bytes) -> str:
    return hmac.new(key, domain + b"\n" + scope.encode() + b"\n" + body, hashlib.sha256).hexdigest()


class Signer:
    """Signs and verifies records and meta entries with the fleet key for one fleet scope."""

    def __init__(self, key: str, scope: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"the fleet key must be at least {MIN_KEY_LENGTH} characters")
        self._key = key.encode()
        self.scope = scope

    def sign(self, record: Record) -> str:
        body = asdict(record)
        mac = _mac(self._key, RECORD_DOMAIN, self.scope, _canonical(body))
        return _canonical({"r": body, "m": mac}).decode()

    def verify(self, wire: str | bytes) -> Record:
        try:
            data = json.loads(wire)
            body, mac = data["r"], data["m"]
            expected = _mac(self._key, RECORD_DOMAIN, self.scope, _canonical(body))
        except (ValueError, KeyError, TypeError):
            raise RefusedRecord("malformed") from None
        if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
            raise RefusedRecord("signature")
        try:
            return Record(**body)
        except TypeError:
            raise RefusedRecord("malformed") from None

    def sign_meta(self, at: float, digest: str) -> str:
        body = {"at": at, "digest": digest}
        mac = _mac(self._key, META_DOMAIN, self.scope, _canonical(body))
        return _canonical({"meta": body, "m": mac}).decode()

    def verify_meta(self, wire: str | bytes) -> tuple[float, str]:
        try:
            data = json.loads(wire)
            body, mac = data["meta"], data["m"]
            expected = _mac(self._key, META_DOMAIN, self.scope, _canonical(body))
            at, digest = float(body["at"]), str(body["digest"])
        except (ValueError, KeyError, TypeError):
            raise RefusedRecord("malformed meta") from None
        if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
            raise RefusedRecord("meta signature")
        return at, digest


def state_digest(wires: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """A digest over the state hash's records (name -> signed wire), whatever their order: the
    signed meta names it, so no entry can be swapped for an older signed one unnoticed."""
    items = wires.items() if isinstance(wires, Mapping) else wires
    h = hashlib.sha256()
    for name, wire in sorted(items):
        h.update(name.encode() + b"\x00" + hashlib.sha256(wire.encode()).digest())
    return h.hexdigest()
