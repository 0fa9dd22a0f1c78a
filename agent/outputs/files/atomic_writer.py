"""Swap a whole set of files into a directory at once, the way Kubernetes' AtomicWriter does.

    dir/..2026_11_27_01_02_03.123456789/   the set itself (files and subdirectories)
    dir/..data -> ..2026_11_27_01_02_03.123456789
    dir/db     -> ..data/db                 one symlink per top-level entry of the set

A new set is written whole into a fresh `..<timestamp>` directory (modes and owners set, synced),
then a `..data_tmp` symlink to it is renamed over `..data`: one rename, so a reader that resolves
`..data` once sees either the old set or the new one, never a mix. Old sets are removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"
LINK_TMP = "..link_tmp"
NAME_MAX = 255
# Well under the kernel's 4096, leaving room for files.dir and the set's own name.
PATH_MAX = 2048
_SET_NAME = re.compile(r"\.\.\d{4}(_\d\d){5}\.\d{9}")


class UnsafePathError(ValueError):
    """A relative path the writer refuses: it could escape the directory or clash with ours."""


def path_problem(path: str) -> str | None:
    """Why `path` may not be written under the directory, or None when it is safe.

    Safe means: relative, segments that are neither empty nor `.`/`..`, no NUL, encodable, and a
    first segment that does not start with `..` (those names belong to the writer).
    """
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL character"
    if path.startswith("/"):
        return "is an absolute path"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(path.encode("utf-8")) > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    segments = path.split("/")
    for segment in segments:
        if segment == "":
            return "has an empty path segment"
        if segment in (".", ".."):
            return f"has a {segment!r} path segment"
        if len(segment.encode("utf-8")) > NAME_MAX:
            return f"has a path segment longer than {NAME_MAX} bytes"
    if segments[0].startswith(".."):
        return "starts with '..' (reserved for the writer's own entries)"
    return None


@dataclass(frozen=True, slots=True)
class Ownership:
    mode: int
    dir_mode: int
    uid: int | None = None
    gid: int | None = None

    def chown(self, path: Path) -> None:
        if self.uid is not None or self.gid is not None:
            os.chown(
                path,
                -1 if self.uid is None else self.uid,
                -1 if self.gid is None else self.gid,
                follow_symlinks=False,
            )


_DIR_LOCKS: dict[str, threading.Lock] = {}
_DIR_LOCKS_GUARD = threading.Lock()


def _dir_lock(directory: Path) -> threading.Lock:
    key = os.path.abspath(directory)
    with _DIR_LOCKS_GUARD:
        return _DIR_LOCKS.setdefault(key, threading.Lock())


def _set_name(now_ns: int) -> str:
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return ".." + time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(seconds)) + f".{nanos:09d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_own_link(path: Path, name: str) -> bool:
    try:
        return os.readlink(path) == f"{DATA}/{name}"
    except OSError:
        return False


def remove_tree(path: Path) -> None:
    """rmtree that also works on directories whose mode (e.g. 0500) forbids removing entries."""
    for root, dirs, _files in os.walk(path, topdown=True):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(Path(root) / d, 0o700, follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


class AtomicWriter:
    def __init__(self, directory: Path, ownership: Ownership) -> None:
        self.dir = directory
        self.own = ownership

    # --- reading the current set --------------------------------------------------------------

    def current_set(self) -> str | None:
        """Name of the `..<timestamp>` directory `..data` points to, if any."""
        try:
            return os.readlink(self.dir / DATA)
        except OSError:
            return None

    def read_current(self, path: str) -> bytes | None:
        """The bytes of `path` in the current set, or None (absent, unsafe or unreadable)."""
        if path_problem(path) is not None:
            return None
        try:
            return (self.dir / DATA / path).read_bytes()
        except OSError:
            return None

    # --- writing a new set --------------------------------------------------------------------

    def ensure_dir(self) -> None:
        """Create the directory (with dir_mode and owner) if it is missing."""
        if self.dir.is_dir():
            return
        mode = self.own.dir_mode
        if os.geteuid() != 0:
            # Without root the writer needs owner rwx on its own directory to swap entries in it.
            mode |= stat.S_IRWXU
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        self.own.chown(self.dir)
        os.chmod(self.dir, mode)

    def write(self, files: Mapping[str, bytes]) -> tuple[list[str], str]:
        """Swap in a set holding exactly `files` (relative path -> bytes).

        Returns the top-level names that could not be linked (blocked by an entry that is not a
        symlink) and the name of the new set. Raises OSError when the set could not be swapped
        in; the previous set is then left as it was.
        """
        for path in files:
            problem = path_problem(path)
            if problem is not None:
                raise UnsafePathError(f"{path!r} {problem}")
        # Two writers on one directory (old and new output during a config reload) take turns.
        with _dir_lock(self.dir):
            self.ensure_dir()
            name, set_dir = self._make_set_dir()
            try:
                self._fill(set_dir, files)
                self._swap(name)
            except BaseException:
                remove_tree(set_dir)
                raise
            blocked = self._link_top_level({p.split("/", 1)[0] for p in files})
            self._remove_old_sets(keep=name)
        return blocked, name

    def _make_set_dir(self) -> tuple[str, Path]:
        now = time.time_ns()
        while True:
            name = _set_name(now)
            path = self.dir / name
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                now += 1
                continue
            return name, path

    def _fill(self, set_dir: Path, files: Mapping[str, bytes]) -> None:
        dirs: list[Path] = [set_dir]
        made: set[Path] = {set_dir}
        for rel, data in sorted(files.items()):
            target = set_dir / rel
            for parent in reversed(target.relative_to(set_dir).parents[:-1]):
                sub = set_dir / parent
                if sub not in made:
                    sub.mkdir(mode=0o700)
                    made.add(sub)
                    dirs.append(sub)
            self._write_file(target, data)
        # Deepest first: a dir_mode without owner write must not stop us filling its parents.
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(d)
            self.own.chown(d)
            os.chmod(d, self.own.dir_mode)

    def _write_file(self, path: Path, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.own.uid is not None or self.own.gid is not None:
                os.fchown(
                    fd,
                    -1 if self.own.uid is None else self.own.uid,
                    -1 if self.own.gid is None else self.own.gid,
                )
            os.fchmod(fd, self.own.mode)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _swap(self, name: str) -> None:
        tmp = self.dir / DATA_TMP
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(name, tmp)
        os.rename(tmp, self.dir / DATA)
        _fsync_dir(self.dir)

    def _link_top_level(self, needed: Iterable[str]) -> list[str]:
        blocked: list[str] = []
        wanted = set(needed)
        for name in sorted(wanted):
            link = self.dir / name
            if _is_own_link(link, name):
                continue
            if os.path.lexists(link) and not link.is_symlink():
                blocked.append(name)
                continue
            tmp = self.dir / LINK_TMP
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(f"{DATA}/{name}", tmp)
            os.rename(tmp, link)
        for entry in os.scandir(self.dir):
            if entry.name.startswith(".."):
                continue
            if entry.name not in wanted and _is_own_link(Path(entry.path), entry.name):
                os.unlink(entry.path)
        return blocked

    def _remove_old_sets(self, keep: str) -> None:
        for entry in os.scandir(self.dir):
            if not entry.name.startswith("..") or entry.name in (DATA, keep):
                continue
            if _SET_NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                remove_tree(Path(entry.path))
            elif entry.name in (DATA_TMP, LINK_TMP):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
