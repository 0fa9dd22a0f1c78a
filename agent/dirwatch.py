"""Changes in one directory (not recursive), as batches of entry names, on the event loop.

On Linux this is inotify read by the loop itself: no thread, no extension module. It replaced
watchfiles, whose Rust notifier, AnyIO worker thread and imports cost ~2 MiB of the agent's
resident memory for two watches (issue #15). Elsewhere, or when inotify is unavailable (out of
instances or watches), the directory is listed every `POLL` seconds instead.

A batch gathers the events of one burst: after the first, it waits up to `step` for the next,
and `debounce` at most in all (a save by rename, a ConfigMap's `..data` swap: one batch).
Callers decide what a batch means for them (they compare the file they care about), so a name
may be reported that did not really change, and `OVERFLOW` stands for "anything may have
changed" (the kernel dropped events, or the watch had to be set up again).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

#: In a batch when events were lost: every entry may have changed.
OVERFLOW = ""
POLL = 0.5  # seconds between listings when inotify cannot be used

# <sys/inotify.h>
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED


class Inotify:
    """One inotify instance watching one directory; `read()` parses what is pending."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd
        self.directory = directory
        try:
            self.add_watch()
        except OSError:
            os.close(fd)
            raise

    def add_watch(self) -> None:
        if self._add(self.fd, os.fsencode(self.directory), MASK) < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(self.directory))

    def read(self) -> tuple[set[str], bool]:
        """(names reported, whether the directory's own watch ended); empty when none pending."""
        names: set[str] = set()
        gone = False
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return names, gone
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                names.add(OVERFLOW)
            if mask & _GONE:
                gone = True
            name = raw.rstrip(b"\0")
            if name:
                names.add(os.fsdecode(name))
        return names, gone

    def close(self) -> None:
        os.close(self.fd)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int, within: float | None) -> bool:
    """Whether `fd` became readable within `within` seconds (None: wait for ever)."""
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        async with asyncio.timeout(within):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def _rewatch(watch: Inotify) -> None:
    """The directory went away (renamed, deleted): watch it again once it is back."""
    while True:
        await asyncio.sleep(POLL)
        watch.read()  # drop what the old watch left
        try:
            watch.add_watch()
            return
        except OSError:
            continue


async def _inotify_batches(watch: Inotify, debounce: float, step: float) -> AsyncIterator[set[str]]:
    loop = asyncio.get_running_loop()
    while True:
        await _readable(loop, watch.fd, None)
        batch, gone = watch.read()
        deadline = loop.time() + debounce
        while not gone and (left := deadline - loop.time()) > 0:
            if not await _readable(loop, watch.fd, min(step, left)):
                break
            more, gone = watch.read()
            batch |= more
        if gone:
            await _rewatch(watch)
            batch.add(OVERFLOW)
        if batch:
            yield batch


def _listing(directory: Path) -> dict[str, tuple[int, int, int]]:
    found: dict[str, tuple[int, int, int]] = {}
    try:
        with os.scandir(directory) as entries:
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                found[e.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        pass
    return found


async def _polled_batches(directory: Path) -> AsyncIterator[set[str]]:
    last = _listing(directory)
    while True:
        await asyncio.sleep(POLL)
        now = _listing(directory)
        changed = {n for n in last.keys() | now.keys() if last.get(n) != now.get(n)}
        last = now
        if changed:
            yield changed


def fingerprint(path: Path) -> tuple[str, int, int, int] | None:
    """What identifies this version of the file, following symlinks; None when it is absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size


async def watch_file(target: Path) -> AsyncIterator[None]:
    """Yields after each change of the file `target` (absolute).

    Any event in its directory counts when the file it resolves to is no longer the same: that
    covers edits in place, editors that save by rename, and Kubernetes ConfigMap volumes, where
    the file is a symlink through `..data` and an update swaps that link, not the file.
    Not recursive: another directory below (files.dir often is) may change often.
    """
    last = fingerprint(target)
    async for _ in watch_dir(target.parent):
        now = fingerprint(target)
        if now != last:
            last = now
            yield


def _is_dir(path: Path) -> bool:
    return os.path.isdir(path)


async def watch_dir(
    directory: Path, *, debounce: float = 0.05, step: float = 0.02
) -> AsyncGenerator[set[str], None]:
    """Batches of names of `directory`'s entries that changed, until the iteration is closed.
    Raises OSError at once when `directory` cannot be watched at all (it does not exist)."""
    if not _is_dir(directory):
        raise FileNotFoundError(2, "no such directory", str(directory))
    watch: Inotify | None = None
    if sys.platform.startswith("linux"):
        try:
            watch = Inotify(directory)
        except (OSError, AttributeError) as exc:  # out of instances or watches; no inotify
            log.warning("dir_watch_polling", directory=str(directory), reason=str(exc))
    if watch is None:
        async for batch in _polled_batches(directory):
            yield batch
        return
    try:
        async for batch in _inotify_batches(watch, debounce, step):
            yield batch
    finally:
        watch.close()
