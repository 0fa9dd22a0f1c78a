"""Snapshot.diff: a parameter re-created at the same version number is a change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.snapshot import Parameter, Snapshot

T = datetime(2026, 1, 1, tzinfo=UTC)


def _snap(*params: Parameter) -> Snapshot:
    return Snapshot.build({p.name: p for p in params}, 1)


def _secure(value: str, modified: datetime, cipher: str) -> Parameter:
    return Parameter("/s", "s", "SecureString", value, 1, modified, encrypted_value=cipher)


def test_same_version_and_value_but_modified_later_is_an_update() -> None:
    old = _snap(_secure("v", T, "AQICAH-1"))
    new = _snap(_secure("v", T + timedelta(seconds=5), "AQICAH-2"))
    change = old.diff(new)
    assert [(c.name, c.old_version, c.new_version) for c in change.updated] == [("/s", 1, 1)]


def test_same_version_new_ciphertext_is_an_update() -> None:
    assert old_new_differ(_secure("v", T, "AQICAH-1"), _secure("v", T, "AQICAH-2"))


def test_identical_is_no_change() -> None:
    assert not old_new_differ(_secure("v", T, "AQICAH-1"), _secure("v", T, "AQICAH-1"))


def old_new_differ(a: Parameter, b: Parameter) -> bool:
    return bool(_snap(a).diff(_snap(b)))


def test_a_secrets_manager_reference_changes_by_value_only() -> None:
    """They keep version 0; their LastModifiedDate is the secret's and stays put, but only the
    value is a reliable sign of change for them."""
    name = "/aws/reference/secretsmanager/db"
    a = Parameter(name, "db", "SecureString", "pw", 0, T)
    b = Parameter(name, "db", "SecureString", "pw", 0, T + timedelta(seconds=1))
    assert not old_new_differ(a, b)
    c = Parameter(name, "db", "SecureString", "pw2", 0, T)
    assert old_new_differ(a, c)
