"""files.dir itself: opened as a directory descriptor only when nobody else can change it.

The writer works relative to the descriptor this module hands out, so renaming or swapping a path
component after the check cannot redirect a write. files.dir (and every parent the agent
creates for it) must be a real directory, not a symlink, owned by the agent's uid and writable by
nobody else: whoever can write it can swap `..data` and the top-level links, and a symlink
planted in its place would send the values (and the agent's deletions) wherever it points.
Parents that already exist are the operator's and are followed as they are (`/var/run -> /run`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A parent the agent creates: searchable by the app's user, writable only by the agent.
PARENT_MODE = 0o755


class UnsafeDirectoryError(Exception):
    """files.dir (or an entry in it) is not the agent's to write; the message names the path."""


@dataclass(frozen=True, slots=True)
class DirOwner:
    """How a files.dir the agent creates is set up: dir_mode, and the app's uid/gid."""

    dir_mode: int
    uid: int | None = None
    gid: int | None = None

    def mode(self) -> int:
        """dir_mode without group/other write; owner rwx for a non-root agent (it swaps entries
        in it); search-only (`x`, no listing) for the app's group and others when the app runs as
        another uid, so it can reach its set (the set directories are the app's, with dir_mode)."""
        mode = self.dir_mode & ~0o022
        euid = os.geteuid()
        if euid != 0:
            mode |= stat.S_IRWXU
        if self.uid is not None and self.uid != euid:
            mode |= stat.S_IXGRP | stat.S_IXOTH
        return mode


def check_fd(fd: int, path: Path | str) -> None:
    """Refuse a directory someone other than the agent could change."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectoryError(f"{path} is not a directory")
    euid = os.geteuid()
    if st.st_uid != euid:
        raise UnsafeDirectoryError(
            f"{path} is owned by uid {st.st_uid}, not by the agent's uid {euid}: refused "
            "(its owner could swap the files the app reads)"
        )
    if st.st_mode & 0o022:
        raise UnsafeDirectoryError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
            "refused (anyone who can write it could swap the files the app reads); use a "
            "directory only the agent can write, e.g. one it creates inside the shared mount"
        )


def open_subdir(parent_fd: int, name: str, path: Path | str) -> int:
    """`name` under `parent_fd` as a descriptor, never through a symlink."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                    raise UnsafeDirectoryError(
                        f"{path} is a symlink: refused (it could point anywhere; "
                        "configure the real directory)"
                    ) from None
            raise UnsafeDirectoryError(f"{path} is not a directory") from None
        raise


def open_files_dir(directory: Path, owner: DirOwner, create: bool) -> tuple[int, bool]:
    """(descriptor of files.dir, whether it was created now), after the checks above.

    Missing: FileNotFoundError unless `create`; then it and its missing parents are made.
    """
    path = Path(os.path.abspath(directory))
    missing: list[str] = []
    existing = path
    while not os.path.lexists(existing):
        if existing.parent == existing:
            break
        missing.append(existing.name)
        existing = existing.parent
    if not path.name:
        raise UnsafeDirectoryError(f"{path} cannot be files.dir")
    if not missing:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = open_subdir(parent, path.name, path)
        finally:
            os.close(parent)
        try:
            check_fd(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return fd, False
    if not create:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    fd = os.open(existing, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    created = False
    current = existing
    try:
        for name in reversed(missing):
            current = current / name
            last = current == path
            try:
                os.mkdir(name, 0o700 if last else PARENT_MODE, dir_fd=fd)
                made = True
            except FileExistsError:  # made by someone else meanwhile: checked like any other
                made = False
            child = open_subdir(fd, name, current)
            os.close(fd)
            fd = child
            if made and last:
                if owner.gid is not None:
                    os.fchown(fd, -1, owner.gid)
                os.fchmod(fd, owner.mode())
                created = True
            check_fd(fd, current)
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def remove_tree_at(parent_fd: int, name: str) -> None:
    """Remove the directory `name` under `parent_fd` with everything in it.

    Never follows a symlink (one planted inside a set is removed, not its target), and makes each
    directory writable first, so a set with a `0500` dir_mode can be removed by a non-root agent.
    """
    try:
        root = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    # (parent fd, name, own fd, subdirectories still to remove)
    frames: list[tuple[int, str, int, list[str]]] = [(parent_fd, name, root, _clear_files(root))]
    try:
        while frames:
            _, _, fd, subdirs = frames[-1]
            if subdirs:
                sub = subdirs.pop()
                child = os.open(sub, DIR_FLAGS, dir_fd=fd)
                frames.append((fd, sub, child, _clear_files(child)))
                continue
            pfd, own_name, own_fd, _ = frames.pop()
            os.close(own_fd)
            os.rmdir(own_name, dir_fd=pfd)
    finally:
        for _, _, fd, _ in frames:
            os.close(fd)


def _clear_files(fd: int) -> list[str]:
    """Unlink every entry of the directory `fd` that is not a directory; return the others."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o700)
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    subdirs = []
    for entry, is_dir in entries:
        if is_dir:
            subdirs.append(entry)
        else:
            os.unlink(entry, dir_fd=fd)
    return subdirs
