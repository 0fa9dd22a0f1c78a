"""The HTTP output's shared pieces: query flags, and renderings cached per Parameter object
(a shortcut of the serving hot path that must answer exactly what the slow path would)."""

from __future__ import annotations

import pytest

from agent.outputs.http.context import ApiError, PerParameter, query_flag
from agent.snapshot import Parameter
from tests.support.builders import parameter


def test_query_flags_accept_true_false_in_any_case_and_refuse_the_rest() -> None:
    assert query_flag("withDecryption", None, False) is False
    assert query_flag("recursive", None, True) is True
    assert query_flag("withDecryption", "TRUE", False) is True
    assert query_flag("recursive", "False", True) is False
    with pytest.raises(ApiError, match="withDecryption must be true or false, got 'yes'") as exc:
        query_flag("withDecryption", "yes", False)
    assert (exc.value.status, exc.value.code) == (400, "ValidationException")


def test_a_rendering_is_reused_only_for_the_very_object_it_was_built_from() -> None:
    built: list[Parameter] = []

    def build(p: Parameter) -> str:
        built.append(p)
        return f"{p.value}@{p.version}"

    cache = PerParameter(build)
    first = parameter("/app/db/url", "old")
    assert cache.get(first) == "old@1"
    assert cache.get(first) == "old@1"
    assert built == [first]
    # A refresh makes a new object even when nothing changed: rebuilt, never served stale.
    same_version_again = parameter("/app/db/url", "old")
    assert cache.get(same_version_again) == "old@1"
    assert cache.get(parameter("/app/db/url", "new", version=2)) == "new@2"
    assert len(built) == 3


def test_the_cache_is_emptied_past_its_limit() -> None:
    built: list[str] = []

    def build(p: Parameter) -> str:
        built.append(p.name)
        return p.name

    cache = PerParameter(build, limit=2)
    params = [parameter(f"/p{i}") for i in range(3)]
    for p in (params[0], params[1], params[0], params[1]):
        cache.get(p)
    assert built == ["/p0", "/p1"]  # both kept while within the limit
    cache.get(params[2])  # the third name empties the cache first
    cache.get(params[2])
    cache.get(params[0])
    assert built == ["/p0", "/p1", "/p2", "/p0"]
