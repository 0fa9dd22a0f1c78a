from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.snapshot import Parameter, Snapshot

T = datetime(2026, 1, 1, tzinfo=UTC)


def param(name: str, version: int = 1, value: str = "v", kind: str = "String") -> Parameter:
    return Parameter(name, name.lstrip("/"), kind, value, version, T, encrypted_value=None)


def snap(*params: Parameter, generation: int = 1) -> Snapshot:
    return Snapshot.build({p.name: p for p in params}, generation)


def test_diff_added_updated_removed() -> None:
    old = snap(param("/a"), param("/b"), param("/c"))
    new = snap(param("/a"), param("/b", 2), param("/d"))
    change = old.diff(new)
    assert [(c.name, c.old_version, c.new_version) for c in change.added] == [("/d", None, 1)]
    assert [(c.name, c.old_version, c.new_version) for c in change.updated] == [("/b", 1, 2)]
    assert [(c.name, c.old_version, c.new_version) for c in change.removed] == [("/c", 1, None)]
    assert change.summary()["updated"] == [{"name": "/b", "old_version": 1, "new_version": 2}]


def test_no_change_is_falsy() -> None:
    assert not snap(param("/a")).diff(snap(param("/a")))


def test_same_version_new_value_is_a_change() -> None:
    # Secrets Manager references keep version 0: their value is what tells.
    change = snap(param("/s", 0, "x")).diff(snap(param("/s", 0, "y")))
    assert [c.name for c in change.updated] == ["/s"]


def test_repr_never_shows_values() -> None:
    p = Parameter("/a", "a", "SecureString", "hunter2-secret", 1, T, encrypted_value="AQICenc")
    assert "hunter2-secret" not in repr(p) and "AQICenc" not in repr(p)
    assert "hunter2-secret" not in repr(snap(p))


def test_value_for_decryption() -> None:
    p = Parameter("/a", "a", "SecureString", "plain", 1, T, encrypted_value="cipher")
    assert (p.value_for(True), p.value_for(False)) == ("plain", "cipher")
    s = param("/s", value="text")
    assert (s.value_for(True), s.value_for(False)) == ("text", "text")


def test_under_path() -> None:
    s = snap(param("/app/a"), param("/app/db/url"), param("/apple"), param("/other"))
    assert [p.name for p in s.under("/app")] == ["/app/a", "/app/db/url"]
    assert [p.name for p in s.under("/app/", recursive=False)] == ["/app/a"]
    assert len(s.under("/")) == 4


def test_snapshot_is_immutable() -> None:
    s = snap(param("/a"))
    with pytest.raises(TypeError):
        s.parameters["/b"] = param("/b")  # type: ignore[index]
    assert s.get("/b") is None
