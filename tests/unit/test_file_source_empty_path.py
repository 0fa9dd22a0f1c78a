"""The file source: a required `path` that matches nothing is missing, not an empty success."""

from __future__ import annotations

from pathlib import Path

from agent.config import ParameterEntry
from agent.snapshot import Snapshot
from agent.sources.file import FileSource


def _source(tmp_path: Path, *entries: ParameterEntry) -> FileSource:
    f = tmp_path / "values.toml"
    f.write_text('"/app/a" = "x"\n"/app/deep/b" = "y"\n')
    return FileSource(f, entries)


async def test_a_required_path_with_nothing_under_it_is_an_error(tmp_path: Path) -> None:
    result = await _source(tmp_path, ParameterEntry(path="/app"), ParameterEntry(path="/apq")).load(
        Snapshot()
    )
    assert set(result.parameters) == {"/app/a", "/app/deep/b"}
    [error] = result.errors
    assert (error.subject, error.code, error.required, error.is_path) == (
        "/apq",
        "EmptyPath",
        True,
        True,
    )


async def test_a_non_recursive_path_whose_names_are_all_deeper_is_empty(tmp_path: Path) -> None:
    entry = ParameterEntry(path="/app/deep/b/x", recursive=False)
    [error] = (await _source(tmp_path, entry).load(Snapshot())).errors
    assert error.code == "EmptyPath"


async def test_an_optional_path_may_be_empty(tmp_path: Path) -> None:
    result = await _source(tmp_path, ParameterEntry(path="/none", required=False)).load(Snapshot())
    assert result.errors == () and not result.parameters
