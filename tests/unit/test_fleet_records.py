"""Fleet records: order (a re-created parameter, deletions), signatures, the state digest, and
what the watcher publishes after a cycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agent.fleet.records import Record, RefusedRecord, Signer, record_of, state_digest
from agent.fleet.watcher import changed_records
from agent.results import ParameterError
from agent.snapshot import Parameter

KEY = "0123456789abcdef-key"


def param(name: str, version: int, at: float, value: str = "v", secure: bool = False) -> Parameter:
    return Parameter(
        name=name,
        key=name.lstrip("/"),
        type="SecureString" if secure else "String",
        value=value,
        version=version,
        last_modified=datetime.fromtimestamp(at, UTC),
        arn="arn:aws:ssm:us-east-1:1:parameter" + name,
        encrypted_value="Q0lQSEVS" if secure else None,
    )


def test_a_recreated_parameter_at_version_1_is_newer_than_the_deleted_version_3() -> None:
    old = record_of(param("/a", 3, 1000.0))
    assert old is not None
    gone = old.deletion()
    again = record_of(param("/a", 1, 2000.0))
    assert again is not None
    assert old.order < gone.order < again.order


def test_a_secure_string_record_holds_the_ciphertext_never_the_plaintext() -> None:
    rec = record_of(param("/s", 1, 1.0, value="plaintext!", secure=True))
    assert rec is not None and rec.value == "Q0lQSEVS"
    wire = Signer(KEY, "f:1").sign(rec)
    assert "plaintext!" not in wire
    assert "plaintext!" not in repr(rec.parameter("plaintext!"))


def test_signatures_bind_key_scope_and_every_field() -> None:
    signer = Signer(KEY, "fleet:abc")
    rec = Record("/a", "a", "String", "v", 2, 10.0)
    wire = signer.sign(rec)
    assert signer.verify(wire) == rec
    with pytest.raises(RefusedRecord):
        Signer(KEY + "x", "fleet:abc").verify(wire)
    with pytest.raises(RefusedRecord):
        Signer(KEY, "other:abc").verify(wire)  # another fleet's record
    data = json.loads(wire)
    for field, changed in (("value", "w"), ("version", 3), ("deleted", True), ("arn", "x")):
        altered = json.loads(wire)
        altered["r"][field] = changed
        with pytest.raises(RefusedRecord):
            signer.verify(json.dumps(altered))
    with pytest.raises(RefusedRecord):
        signer.verify("not json")
    with pytest.raises(RefusedRecord):
        signer.verify_meta(wire)  # a record is not a meta entry
    assert data["r"]["name"] == "/a"


def test_meta_and_digest() -> None:
    signer = Signer(KEY, "f:1")
    wires = {"/a": signer.sign(Record("/a", "a", "String", "1", 1, 1.0))}
    digest = state_digest(wires)
    at, got = signer.verify_meta(signer.sign_meta(123.5, digest))
    assert (at, got) == (123.5, digest)
    older = {"/a": signer.sign(Record("/a", "a", "String", "0", 0, 0.5))}
    assert state_digest(older) != digest


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Signer("short", "f:1")


def test_watcher_publishes_changes_and_deletions_but_not_failures() -> None:
    a1, b1, c1 = param("/p/a", 1, 1.0), param("/p/b", 1, 1.0), param("/p/c", 1, 1.0)
    published = {p.name: r for p in (a1, b1, c1) if (r := record_of(p)) is not None}
    a2 = param("/p/a", 2, 2.0)
    # b is gone; c failed to load (denied): c must not be published as deleted.
    errors = [ParameterError("/p/c", "AccessDeniedException", "no")]
    out = changed_records({"/p/a": a2}, errors, published)
    assert [(r.name, r.version, r.deleted) for r in out] == [("/p/a", 2, False), ("/p/b", 1, True)]
    assert changed_records({"/p/a": a2, "/p/c": c1}, [], {**published, "/p/a": out[0]}) == [
        published["/p/b"].deletion()
    ]
