"""Swap a whole set of files into a directory at once, the way Kubernetes' AtomicWriter does.

    dir/..2026_11_27_01_02_03.123456789/   the set itself (files and subdirectories)
    dir/..data -> ..2026_11_27_01_02_03.123456789
    dir/db     -> ..data/db                 one symlink per top-level entry of the set

A new set is written whole into a fresh `..<timestamp>` directory (modes and owners set, synced),
then a `..data_tmp` symlink to it is renamed over `..data`: one rename, so a reader that resolves
`..data` once sees either the old set or the new one, never a mix. Old sets are removed afterwards.

Everything happens relative to a descriptor of files.dir opened (and checked) by `directory.py`,
and below it only through descriptors opened without following symlinks. The writer replaces or
removes only what it created: `..data` pointing to a set, `..<timestamp>` directories it owns,
and top-level links `name -> ..data/name`; anything else in the way is left alone and reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.keys import path_problem as path_problem  # re-exported: older importers
from agent.outputs.files.directory import (
    DIR_FLAGS,
    DirOwner,
    UnsafeDirectoryError,
    open_files_dir,
    remove_tree_at,
)

DATA = "..data"
DATA_TMP = "..data_tmp"
LINK_TMP = "..link_tmp"
_SET_NAME = re.compile(r"\.\.\d{4}(_\d\d){5}\.\d{9}")


class UnsafePathError(ValueError):
    """A relative path the writer refuses: it could escape the directory or clash with ours."""


@dataclass(frozen=True, slots=True)
class Ownership:
    mode: int
    dir_mode: int
    uid: int | None = None
    gid: int | None = None

    def apply(self, fd: int, mode: int) -> None:
        if self.uid is not None or self.gid is not None:
            os.fchown(
                fd,
                -1 if self.uid is None else self.uid,
                -1 if self.gid is None else self.gid,
            )
        os.fchmod(fd, mode)

    def dir_owner(self) -> DirOwner:
        return DirOwner(self.dir_mode, self.uid, self.gid)


_DIR_LOCKS: dict[str, threading.Lock] = {}
_DIR_LOCKS_GUARD = threading.Lock()


def _dir_lock(directory: Path) -> threading.Lock:
    key = os.path.abspath(directory)
    with _DIR_LOCKS_GUARD:
        return _DIR_LOCKS.setdefault(key, threading.Lock())


def _set_name(now_ns: int) -> str:
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return ".." + time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(seconds)) + f".{nanos:09d}"


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _link_target(dir_fd: int, name: str) -> str | None:
    """Where the symlink `name` points, or None when it is no symlink (or absent)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _is_own_link(dir_fd: int, name: str) -> bool:
    """A top-level link is the agent's only when it points to the same name under `..data`."""
    return _link_target(dir_fd, name) == f"{DATA}/{name}"


def _unlink_symlink(dir_fd: int, name: str) -> None:
    """Remove `name` if it is a symlink (a leftover of ours); anything else stays."""
    st = _lstat(dir_fd, name)
    if st is not None and stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


class AtomicWriter:
    def __init__(self, directory: Path, ownership: Ownership) -> None:
        self.dir = directory
        self.own = ownership
        #: This writer created files.dir (so retiring it may remove the directory too).
        self.created = False

    def _open(self, create: bool) -> int:
        fd, created = open_files_dir(self.dir, self.own.dir_owner(), create)
        self.created = self.created or created
        return fd

    def _own_uids(self) -> set[int]:
        return {os.geteuid()} if self.own.uid is None else {os.geteuid(), self.own.uid}

    def _is_own_set(self, dir_fd: int, name: str) -> bool:
        """A `..<timestamp>` directory is the agent's when its name and owner say so."""
        if not _SET_NAME.fullmatch(name):
            return False
        st = _lstat(dir_fd, name)
        return st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid in self._own_uids()

    # --- files.dir itself ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Create files.dir if missing, and refuse one that is not safe (UnsafeDirectoryError)."""
        os.close(self._open(create=True))

    # --- reading the current set --------------------------------------------------------------

    def current_set(self) -> str | None:
        """Name of the `..<timestamp>` directory `..data` points to, if any."""
        try:
            fd = self._open(create=False)
        except (OSError, UnsafeDirectoryError):
            return None
        try:
            return _link_target(fd, DATA)
        finally:
            os.close(fd)

    def read_current(self, path: str) -> bytes | None:
        """The bytes of `path` in the current set, or None (absent, unsafe or unreadable).

        Read without following any symlink below `..data`: the set's directories belong to the
        app's user, who could otherwise plant a link to a file only the agent may read.
        """
        if path_problem(path) is not None:
            return None
        try:
            fd = self._open(create=False)
        except (OSError, UnsafeDirectoryError):
            return None
        opened = [fd]
        try:
            name = _link_target(fd, DATA)
            if name is None or not _SET_NAME.fullmatch(name):
                return None
            *dirs, leaf = path.split("/")
            for segment in [name, *dirs]:
                opened.append(os.open(segment, DIR_FLAGS, dir_fd=opened[-1]))
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            opened.append(os.open(leaf, flags, dir_fd=opened[-1]))
            if not stat.S_ISREG(os.fstat(opened[-1]).st_mode):
                return None
            with os.fdopen(os.dup(opened[-1]), "rb") as f:
                return f.read()
        except OSError:
            return None
        finally:
            for each in opened:
                os.close(each)

    # --- writing a new set --------------------------------------------------------------------

    def write(self, files: Mapping[str, bytes]) -> tuple[list[str], str]:
        """Swap in a set holding exactly `files` (relative path -> bytes).

        Returns the top-level names that could not be linked (an entry the agent did not create
        is in the way) and the name of the new set. Raises OSError or UnsafeDirectoryError when
        the set could not be swapped in; the previous set is then left as it was.
        """
        for path in files:
            problem = path_problem(path)
            if problem is not None:
                raise UnsafePathError(f"{path!r} {problem}")
        # Two writers on one directory (old and new output during a config reload) take turns.
        with _dir_lock(self.dir):
            dir_fd = self._open(create=True)
            try:
                self._check_data_link(dir_fd)
                name = self._make_set_dir(dir_fd)
                try:
                    self._fill(dir_fd, name, files)
                    self._swap(dir_fd, name)
                except BaseException:
                    remove_tree_at(dir_fd, name)
                    raise
                blocked = self._link_top_level(dir_fd, {p.split("/", 1)[0] for p in files})
                self._remove_old_sets(dir_fd, keep=name)
            finally:
                os.close(dir_fd)
        return blocked, name

    def _check_data_link(self, dir_fd: int) -> None:
        st = _lstat(dir_fd, DATA)
        if st is None:
            return
        target = _link_target(dir_fd, DATA)
        if target is None or not _SET_NAME.fullmatch(target):
            raise UnsafeDirectoryError(
                f"{self.dir / DATA} is not the agent's (a symlink to a ..<timestamp> set): "
                "refused to replace it"
            )

    def _make_set_dir(self, dir_fd: int) -> str:
        now = time.time_ns()
        while True:
            name = _set_name(now)
            try:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                now += 1
                continue
            return name

    def _fill(self, dir_fd: int, name: str, files: Mapping[str, bytes]) -> None:
        """Write every file into the new set, relative to directory descriptors only.

        In sorted order the paths under one directory come one after another, so a stack of
        open directories suffices; each one is synced, given its owner and `dir_mode` when the
        walk leaves it (deepest first: a `dir_mode` without owner write must not stop us
        filling its parents).
        """
        stack: list[tuple[tuple[str, ...], int]] = [((), os.open(name, DIR_FLAGS, dir_fd=dir_fd))]
        try:
            for rel, data in sorted(files.items()):
                *dirs, leaf = rel.split("/")
                keep = 0
                while keep + 1 < len(stack) and stack[keep + 1][0] == tuple(dirs[: keep + 1]):
                    keep += 1
                while len(stack) > keep + 1:
                    self._finish_dir(stack.pop()[1])
                for depth in range(keep, len(dirs)):
                    parent = stack[-1][1]
                    os.mkdir(dirs[depth], 0o700, dir_fd=parent)
                    fd = os.open(dirs[depth], DIR_FLAGS, dir_fd=parent)
                    stack.append((tuple(dirs[: depth + 1]), fd))
                self._write_file(stack[-1][1], leaf, data)
            while stack:
                self._finish_dir(stack.pop()[1])
        finally:
            for _, fd in stack:
                os.close(fd)

    def _finish_dir(self, fd: int) -> None:
        try:
            os.fsync(fd)
            self.own.apply(fd, self.own.dir_mode)
        finally:
            os.close(fd)

    def _write_file(self, dir_fd: int, name: str, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self.own.apply(fd, self.own.mode)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _swap(self, dir_fd: int, name: str) -> None:
        _unlink_symlink(dir_fd, DATA_TMP)
        os.symlink(name, DATA_TMP, dir_fd=dir_fd)
        os.rename(DATA_TMP, DATA, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)

    def _link_top_level(self, dir_fd: int, needed: Iterable[str]) -> list[str]:
        """One `name -> ..data/name` link per top-level entry; an entry in the way that the
        agent did not create (a file, a directory, a symlink elsewhere) is left alone and
        returned. Links of ours for names no longer in the set are removed."""
        blocked: list[str] = []
        wanted = set(needed)
        for name in sorted(wanted):
            if _is_own_link(dir_fd, name):
                continue
            try:
                os.symlink(f"{DATA}/{name}", name, dir_fd=dir_fd)
            except FileExistsError:
                blocked.append(name)
        with os.scandir(dir_fd) as it:
            names = [e.name for e in it]
        for name in names:
            if not name.startswith("..") and name not in wanted and _is_own_link(dir_fd, name):
                os.unlink(name, dir_fd=dir_fd)
        return blocked

    def _remove_old_sets(self, dir_fd: int, keep: str) -> None:
        with os.scandir(dir_fd) as it:
            names = [e.name for e in it]
        for name in names:
            if name in (DATA, keep):
                continue
            if self._is_own_set(dir_fd, name):
                remove_tree_at(dir_fd, name)
            elif name in (DATA_TMP, LINK_TMP):
                _unlink_symlink(dir_fd, name)

    # --- retiring the directory ---------------------------------------------------------------

    def remove_all(self) -> None:
        """Remove what the agent put in files.dir: its top-level links, `..data` and its sets,
        and the directory itself when this writer created it and nothing else is left in it.
        Entries the agent did not create stay."""
        with _dir_lock(self.dir):
            try:
                dir_fd = self._open(create=False)
            except FileNotFoundError:
                return
            try:
                with os.scandir(dir_fd) as it:
                    names = sorted(e.name for e in it)
                for name in names:  # the links first: a reader then fails cleanly (ENOENT)
                    if not name.startswith("..") and _is_own_link(dir_fd, name):
                        os.unlink(name, dir_fd=dir_fd)
                target = _link_target(dir_fd, DATA)
                if target is not None and _SET_NAME.fullmatch(target):
                    os.unlink(DATA, dir_fd=dir_fd)
                for name in (DATA_TMP, LINK_TMP):
                    _unlink_symlink(dir_fd, name)
                for name in names:
                    if self._is_own_set(dir_fd, name):
                        remove_tree_at(dir_fd, name)
            finally:
                os.close(dir_fd)
            if self.created:
                with contextlib.suppress(OSError):  # not empty: someone else's entries stay
                    os.rmdir(self.dir)
