"""watch_dir: one batch per burst of changes in a directory, for each way a file gets replaced
(in place, by rename, a ConfigMap's `..data` swap), with inotify and with the polling fallback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent import dirwatch
from agent.dirwatch import OVERFLOW, watch_dir

WAIT = 5.0


async def _next(batches: AsyncIterator[set[str]]) -> set[str]:
    return await asyncio.wait_for(anext(batches), WAIT)


async def _changes_after(directory: Path, change: Callable[[], None]) -> set[str]:
    batches = watch_dir(directory)
    first = asyncio.ensure_future(_next(batches))
    await asyncio.sleep(0.1)  # the watch is set up when the generator first runs
    change()
    try:
        return await first
    finally:
        await batches.aclose()


def _in_place(path: Path) -> Callable[[], None]:
    def write() -> None:
        path.write_text("b = 2\n")

    return write


def _by_rename(path: Path) -> Callable[[], None]:
    def save() -> None:
        tmp = path.with_name(".config.toml.swp")
        tmp.write_text("b = 2\n")
        os.replace(tmp, path)

    return save


@pytest.mark.parametrize("how", [_in_place, _by_rename])
async def test_an_edit_is_one_batch_naming_the_file(
    tmp_path: Path, how: Callable[[Path], Callable[[], None]]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("a = 1\n")
    assert "config.toml" in await _changes_after(tmp_path, how(path))


async def test_a_configmap_swap_names_its_data_link(tmp_path: Path) -> None:
    """Kubernetes swaps `..data` (a symlink) by rename; the file's own link never changes."""
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "config.toml").write_text(f"v = '{version}'\n")
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "config.toml").symlink_to("..data/config.toml")

    def swap() -> None:
        (tmp_path / "..data_tmp").symlink_to("v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    assert "..data" in await _changes_after(tmp_path, swap)


async def test_a_burst_is_one_batch(tmp_path: Path) -> None:
    def burst() -> None:
        for i in range(20):
            (tmp_path / f"f{i}").write_text("x")

    names = await _changes_after(tmp_path, burst)
    assert {f"f{i}" for i in range(20)} <= names


async def test_a_directory_that_is_replaced_is_watched_again(tmp_path: Path) -> None:
    watched = tmp_path / "conf"
    watched.mkdir()
    batches = watch_dir(watched)
    first = asyncio.ensure_future(_next(batches))
    await asyncio.sleep(0.1)
    os.rename(watched, tmp_path / "old")
    watched.mkdir()
    try:
        assert OVERFLOW in await first  # "anything may have changed": callers look again
        second = asyncio.ensure_future(_next(batches))
        await asyncio.sleep(dirwatch.POLL + 0.2)
        (watched / "config.toml").write_text("a = 1\n")
        assert "config.toml" in await second
    finally:
        await batches.aclose()


async def test_a_missing_directory_is_an_error_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await anext(watch_dir(tmp_path / "absent"))


async def test_without_inotify_the_directory_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(directory: Path) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(dirwatch, "Inotify", unavailable)
    monkeypatch.setattr(dirwatch, "POLL", 0.05)
    path = tmp_path / "config.toml"
    path.write_text("a = 1\n")
    assert await _changes_after(tmp_path, _by_rename(path)) == {"config.toml"}


async def test_closing_the_iteration_releases_the_descriptor(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    batches = watch_dir(tmp_path)
    pending = asyncio.ensure_future(_next(batches))
    await asyncio.sleep(0.1)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await batches.aclose()
    assert len(os.listdir("/proc/self/fd")) == before
