"""files.dir is trusted only when nobody else can change it (issue 12, row 10): a symlink, another
uid's directory or a group/world-writable one is refused; writes go through a directory
descriptor, so a path swapped mid-write cannot redirect them; entries the agent did not create
are never replaced or removed."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.outputs.base import NotDelivered
from agent.outputs.files import UnsafeDirectoryError
from agent.outputs.files.atomic_writer import AtomicWriter, Ownership
from tests.support.builders import parameter
from tests.support.files_output import FilesHarness, reachable_tmp_dir

SECRET = "only-root-may-read-this"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another uid")


async def refused(files: FilesHarness, *words: str) -> str:
    """files.dir is refused at start and at publish (logged, counted, in the status)."""
    with pytest.raises(UnsafeDirectoryError) as at_start:
        await files.output.prepare()
    message = str(at_start.value)
    assert str(files.dir) in message and all(w in message for w in words), message
    with structlog.testing.capture_logs() as logs, pytest.raises(NotDelivered):
        await files.publish(parameter("/app/k", SECRET), first=True)
    assert files.errors("write") == 1 and files.failing() == 1
    assert files.output.status.state == "failing"
    assert files.output.status.error is not None and all(
        w in files.output.status.error for w in words
    )
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["files_write_failed"]
    assert SECRET not in repr(logs)
    return message


async def test_a_files_dir_planted_as_a_symlink_is_refused_and_nothing_lands_there(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, tmp_path / "params")
    files = FilesHarness(tmp_path / "params")
    await refused(files, "is a symlink")
    assert os.listdir(victim) == []


@as_root
async def test_a_files_dir_owned_by_another_uid_is_refused(tmp_path: Path) -> None:
    (tmp_path / "params").mkdir(mode=0o700)
    os.chown(tmp_path / "params", 12345, 12345)
    files = FilesHarness(tmp_path / "params")
    await refused(files, "owned by uid 12345", f"agent's uid {os.geteuid()}")
    assert os.listdir(tmp_path / "params") == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
async def test_a_files_dir_writable_by_group_or_others_is_refused(
    tmp_path: Path, mode: int
) -> None:
    (tmp_path / "params").mkdir()
    (tmp_path / "params").chmod(mode)
    files = FilesHarness(tmp_path / "params")
    await refused(files, "writable by group or others", f"mode {mode:04o}")
    assert os.listdir(tmp_path / "params") == []


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_parents_the_agent_creates_are_writable_only_by_it(
    tmp_path: Path, open_umask: None
) -> None:
    files = FilesHarness(tmp_path / "a" / "b" / "params", dir_mode="0777")
    await files.publish(parameter("/app/k", "v"), first=True)
    for path in [tmp_path / "a", tmp_path / "a" / "b", files.dir]:
        st = path.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid(), path
        assert not st.st_mode & 0o022, (path, oct(st.st_mode))
    assert (files.dir / "k").read_bytes() == b"v"


async def test_a_path_swapped_during_a_write_cannot_redirect_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone renames files.dir away and plants a symlink to another directory in its place
    while a set is being written: the rest of the write still goes to the directory that was
    checked, never into the symlink's target."""
    directory, moved, victim = tmp_path / "params", tmp_path / "moved", tmp_path / "victim"
    victim.mkdir()
    writer = AtomicWriter(directory, Ownership(0o400, 0o700))
    writer.write({"k": b"one"})
    real_symlink = os.symlink
    swapped: list[bool] = []

    def swap_then_symlink(*args: Any, **kwargs: Any) -> None:
        # The first symlink of a write is `..data_tmp`, made just before the swap.
        if not swapped:
            swapped.append(True)
            os.rename(directory, moved)
            real_symlink(victim, directory)
        real_symlink(*args, **kwargs)

    monkeypatch.setattr(os, "symlink", swap_then_symlink)
    with contextlib.suppress(OSError, UnsafeDirectoryError):  # refusing is fine too
        writer.write({"k": b"two", "new": b"n"})
    monkeypatch.undo()
    assert swapped and os.listdir(victim) == []


async def test_a_foreign_symlink_at_a_top_level_name_is_left_alone_and_reported(
    tmp_path: Path,
) -> None:
    files = FilesHarness(tmp_path / "params")
    files.dir.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not ours")
    os.symlink(elsewhere, files.dir / "k")
    os.symlink(elsewhere, files.dir / "stale")  # not a name of the set: not removed either
    with structlog.testing.capture_logs() as logs:
        await files.publish(parameter("/app/k", "v"), parameter("/app/other", "o"), first=True)
    assert os.readlink(files.dir / "k") == str(elsewhere)
    assert os.readlink(files.dir / "stale") == str(elsewhere)
    assert elsewhere.read_text() == "not ours"
    assert (files.dir / "..data" / "k").read_bytes() == b"v"
    assert (files.dir / "other").read_bytes() == b"o"
    assert files.errors("path") == 1
    (blocked,) = [e for e in logs if e["event"] == "file_link_blocked"]
    assert blocked["name"] == "k"
    assert any("not linked" in p for p in files.output.problems)
    # Later sets leave both alone too.
    await files.publish(parameter("/app/other", "o2", version=2))
    assert os.readlink(files.dir / "k") == str(elsewhere)
    assert os.readlink(files.dir / "stale") == str(elsewhere)


@pytest.mark.parametrize("kind", ["symlink elsewhere", "directory"])
async def test_a_data_entry_the_agent_did_not_create_is_not_replaced(
    tmp_path: Path, kind: str
) -> None:
    files = FilesHarness(tmp_path / "params")
    files.dir.mkdir(mode=0o700)
    if kind == "directory":
        (files.dir / "..data").mkdir()
    else:
        os.symlink(tmp_path, files.dir / "..data")
    before = os.lstat(files.dir / "..data").st_ino
    with pytest.raises(NotDelivered):
        await files.publish(parameter("/app/k", "v"), first=True)
    assert os.lstat(files.dir / "..data").st_ino == before
    assert "..data is not the agent's" in (files.output.status.error or "")
    assert not os.path.lexists(files.dir / "k")


@as_root
async def test_a_set_directory_of_another_uid_is_not_removed(tmp_path: Path) -> None:
    files = FilesHarness(tmp_path / "params")
    files.dir.mkdir(mode=0o700)
    foreign = files.dir / "..2020_01_01_00_00_00.000000001"
    foreign.mkdir()
    (foreign / "f").write_text("theirs")
    os.chown(foreign, 12345, 12345)
    await files.publish(parameter("/app/k", "v"), first=True)
    await files.publish(parameter("/app/k", "w", version=2))
    assert (foreign / "f").read_text() == "theirs"


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    with reachable_tmp_dir("ssm-sidecar-dir-") as path:
        yield path


@as_root
async def test_a_link_planted_in_the_apps_set_does_not_make_the_agent_copy_a_file(
    tmp_path: Path, reachable_dir: Path
) -> None:
    """The set's directories belong to the app's uid. When a bundle fails, its previous bytes
    are kept, read from the current set: a symlink the app put there must not be followed by
    the (root) agent, or it would copy a root-only file into the app's set."""
    root_only = tmp_path / "shadow"
    root_only.write_text(SECRET)
    root_only.chmod(0o600)
    files = FilesHarness(
        reachable_dir / "params", uid=12345, bundle=[{"path": "app.env", "prefix": "/app"}]
    )
    await files.publish(parameter("/app/db-url", "one"), first=True)
    current = files.dir / os.readlink(files.dir / "..data")
    # As the app's user: replace its bundle by a link to the root-only file.
    subprocess.run(
        ["sh", "-c", f'rm "{current}/app.env" && ln -s "{root_only}" "{current}/app.env"'],
        user=12345,
        check=True,
    )
    # An env-name clash makes the bundle fail: the agent keeps "the previous bytes".
    await files.publish(parameter("/app/db-url", "two", version=2), parameter("/app/db_url", "x"))
    assert files.errors("bundle") == 1
    written = files.dir / os.readlink(files.dir / "..data")
    assert written != current
    assert not (written / "app.env").exists() or SECRET not in (written / "app.env").read_text()
