from __future__ import annotations

import pytest

from tests.support.builders import parameter, snapshot


def test_diff_added_updated_removed() -> None:
    old = snapshot(parameter("/a"), parameter("/b"), parameter("/c"))
    new = snapshot(parameter("/a"), parameter("/b", version=2), parameter("/d"))
    change = old.diff(new)
    assert [(c.name, c.old_version, c.new_version) for c in change.added] == [("/d", None, 1)]
    assert [(c.name, c.old_version, c.new_version) for c in change.updated] == [("/b", 1, 2)]
    assert [(c.name, c.old_version, c.new_version) for c in change.removed] == [("/c", 1, None)]
    assert change.summary()["updated"] == [{"name": "/b", "old_version": 1, "new_version": 2}]


def test_no_change_is_falsy() -> None:
    assert not snapshot(parameter("/a")).diff(snapshot(parameter("/a")))


def test_same_version_new_value_is_a_change() -> None:
    # Secrets Manager references keep version 0: their value is what tells.
    change = snapshot(parameter("/s", "x", version=0)).diff(
        snapshot(parameter("/s", "y", version=0))
    )
    assert [c.name for c in change.updated] == ["/s"]


def test_repr_never_shows_values() -> None:
    p = parameter("/a", "hunter2-secret", type="SecureString", encrypted="AQICenc")
    assert "hunter2-secret" not in repr(p) and "AQICenc" not in repr(p)
    assert "hunter2-secret" not in repr(snapshot(p))


def test_value_for_decryption() -> None:
    p = parameter("/a", "plain", type="SecureString", encrypted="cipher")
    assert (p.value_for(True), p.value_for(False)) == ("plain", "cipher")
    s = parameter("/s", "text")
    assert (s.value_for(True), s.value_for(False)) == ("text", "text")


def test_under_path() -> None:
    s = snapshot(
        parameter("/app/a"), parameter("/app/db/url"), parameter("/apple"), parameter("/other")
    )
    assert [p.name for p in s.under("/app")] == ["/app/a", "/app/db/url"]
    assert [p.name for p in s.under("/app/", recursive=False)] == ["/app/a"]
    assert len(s.under("/")) == 4


def test_snapshot_is_immutable() -> None:
    s = snapshot(parameter("/a"))
    with pytest.raises(TypeError):
        s.parameters["/b"] = parameter("/b")  # type: ignore[index]
    assert s.get("/b") is None
