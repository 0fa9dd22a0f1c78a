from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config import ParameterEntry
from agent.results import SourceError
from agent.snapshot import Snapshot
from agent.sources.file import FileSource


def source(tmp_path: Path, text: str, *entries: ParameterEntry) -> FileSource:
    f = tmp_path / "values.toml"
    f.write_text(text)
    return FileSource(f, entries or (ParameterEntry(path="/"),))


async def test_values_types_and_nested_tables(tmp_path: Path) -> None:
    s = source(
        tmp_path,
        '"/app/a" = "x"\n"/app/s" = { value = "sec", type = "SecureString" }\n'
        '"/app/l" = ["1", "2"]\n[app.nested]\n"k/v" = "deep"\n',
    )
    snap = (await s.load(Snapshot())).parameters
    assert {n: (p.type, p.value) for n, p in snap.items()} == {
        "/app/a": ("String", "x"),
        "/app/s": ("SecureString", "sec"),
        "/app/l": ("StringList", "1,2"),
        "/app/nested/k/v": ("String", "deep"),
    }
    secure = snap["/app/s"]
    assert secure.encrypted_value and "sec" not in secure.encrypted_value
    assert snap["/app/nested/k/v"].key == "app/nested/k/v"


async def test_each_change_raises_the_version(tmp_path: Path) -> None:
    s = source(tmp_path, '"/a" = "1"\n"/b" = "same"\n')
    first = (await s.load(Snapshot())).parameters
    s.path.write_text('"/a" = "2"\n"/b" = "same"\n')
    second = (await s.load(Snapshot())).parameters
    assert (first["/a"].version, second["/a"].version) == (1, 2)
    assert second["/b"].version == 1 and second["/b"].last_modified == first["/b"].last_modified


async def test_selection_by_path_and_name(tmp_path: Path) -> None:
    s = source(
        tmp_path,
        '"/app/a" = "x"\n"/app/deep/b" = "y"\n"/other" = "z"\n',
        ParameterEntry(path="/app", recursive=False),
        ParameterEntry(name="/other", alias="o"),
        ParameterEntry(name="/missing", required=False),
    )
    result = await s.load(Snapshot())
    assert {n: p.key for n, p in result.parameters.items()} == {"/app/a": "a", "/other": "o"}
    assert [(e.subject, e.required) for e in result.errors] == [("/missing", False)]


@pytest.mark.parametrize(
    "text", ['"/a" = 3\n', '"/a" = { value = "x", type = "Bogus" }\n', "=nope"]
)
async def test_bad_file_is_a_source_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(SourceError):
        await source(tmp_path, text).load(Snapshot())


async def test_changes_yields_after_an_edit(tmp_path: Path) -> None:
    s = source(tmp_path, '"/a" = "1"\n')
    changes = s.changes()
    waiter = asyncio.ensure_future(anext(changes))
    # The watcher needs to be running before the edit; keep editing until it notices.
    for n in range(100):
        s.path.write_text(f'"/a" = "{n + 2}"\n')
        done, _ = await asyncio.wait({waiter}, timeout=0.1)
        if done:
            break
    assert waiter.done()
    await changes.aclose()  # type: ignore[attr-defined]


async def test_a_new_source_continues_the_served_versions(tmp_path: Path) -> None:
    """After a config reload a new FileSource must not restart at version 1 (a false change)."""
    first = source(tmp_path, '"/a" = "1"\n')
    await first.load(Snapshot())
    first.path.write_text('"/a" = "2"\n"/b" = "x"\n')
    served = await first.load(Snapshot())
    snap = Snapshot.build(served.parameters, 1)
    again = await FileSource(first.path, (ParameterEntry(path="/"),)).load(snap)
    assert not snap.diff(Snapshot.build(again.parameters, 2))
    first.path.write_text('"/a" = "3"\n"/b" = "x"\n')
    later = await FileSource(first.path, (ParameterEntry(path="/"),)).load(snap)
    assert later.parameters["/a"].version == 3 and later.parameters["/b"].version == 1


async def test_changes_yields_after_a_configmap_swap(tmp_path: Path) -> None:
    """A ConfigMap volume updates a values file by swapping the `..data` link, never touching
    the file's own name: the source must notice all the same."""
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "values.toml").write_text('"/a" = "1"\n')
    (mount / "..data").symlink_to("..v1")
    (mount / "values.toml").symlink_to("..data/values.toml")
    s = FileSource(mount / "values.toml", (ParameterEntry(path="/"),))
    changes = s.changes()
    waiter = asyncio.ensure_future(anext(changes))
    # The watcher needs to be running before the swap; keep swapping until it notices.
    for n in range(100):
        version = mount / f"..v{n + 2}"
        version.mkdir()
        (version / "values.toml").write_text(f'"/a" = "{n + 2}"\n')
        (mount / "..data_tmp").symlink_to(version.name)
        (mount / "..data_tmp").rename(mount / "..data")
        done, _ = await asyncio.wait({waiter}, timeout=0.1)
        if done:
            break
    assert waiter.done()
    await changes.aclose()  # type: ignore[attr-defined]
