"""How the atomic writer makes a set durable: one sync of the filesystem before `..data` names
the set (not one fsync per file), and a set whose sync fails is never swapped in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.outputs.files import atomic_writer
from agent.outputs.files.atomic_writer import AtomicWriter, Ownership

FILES = {f"g{n // 10}/p{n:03d}": f"value-{n}".encode() for n in range(50)}


def _writer(tmp_path: Path) -> AtomicWriter:
    writer = AtomicWriter(tmp_path / "params", Ownership(0o640, 0o750))
    writer.prepare()
    return writer


def test_a_set_is_synced_once_not_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync = os.fsync
    real_sync = atomic_writer._sync_filesystem

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def sync_filesystem(fd: int) -> None:
        calls.append("syncfs")
        real_sync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(atomic_writer, "_sync_filesystem", sync_filesystem)
    writer = _writer(tmp_path)
    writer.write(FILES)
    # The set's filesystem once, then files.dir after the rename of ..data.
    assert calls == ["syncfs", "fsync"]
    assert (tmp_path / "params" / "g3" / "p031").read_bytes() == b"value-31"


def test_the_real_sync_call_works_here(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        atomic_writer._sync_filesystem(fd)  # raises OSError on failure
    finally:
        os.close(fd)


def test_a_set_whose_sync_fails_is_not_swapped_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _writer(tmp_path)
    _, first = writer.write({"a": b"old"})

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic_writer, "_sync_filesystem", failing)
    with pytest.raises(OSError, match="Input/output error"):
        writer.write({"a": b"new"})
    assert writer.current_set() == first
    assert (tmp_path / "params" / "a").read_bytes() == b"old"
    sets = [n for n in os.listdir(tmp_path / "params") if n.startswith("..") and n != "..data"]
    assert sets == [first]  # the unswapped set was removed
