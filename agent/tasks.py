"""Background tasks that cannot die unseen.

Every long-lived task in the agent is started with `spawn`. A task that raises, that is cancelled
by anyone but its owner, or that returns although it was meant to run until stopped, has died:
that is logged once (`task_died`, with the exception's type, text and innermost place) and, when
the agent's `TaskWatch` is installed, it ends the agent (exit 1 with a one-line reason) rather
than leaving a live process that no longer does its job.

The watch is found through a context variable: `Agent.start` installs it, and every task started
from there (and the tasks those start: a reload builds new outputs) inherits it, so outputs need
no reference to the agent. An owner ends its own task with `cancel` (or `release` when it asks
the task to finish on its own); those ends are not deaths.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
import weakref
from collections.abc import Coroutine
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agent.logs import redactor

log = structlog.get_logger(__name__)

T = TypeVar("T")

_current: ContextVar[TaskWatch | None] = ContextVar("ssm_sidecar_task_watch", default=None)
# Tasks whose owner is ending them: whatever way they end now is not a death.
_released: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
MAX_REASON = 300


def where(exc: BaseException) -> str:
    """`file.py:LINE in function` of the innermost frame: enough to find the bug, one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def describe(exc: BaseException) -> str:
    """`Type: text` on one line, any current parameter value scrubbed, bounded in length."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    scrubbed = redactor(None, "", {"text": line})["text"]
    return str(scrubbed)[:MAX_REASON]


class TaskWatch:
    """The agent's watch over its tasks: the first death becomes the reason the agent ends."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._died = asyncio.Event()
        self._closed = False

    def install(self) -> None:
        """Tasks spawned from the current context on are watched by this watch."""
        _current.set(self)

    def close(self) -> None:
        """The agent is stopping: tasks that end from now on are not deaths."""
        self._closed = True

    async def wait(self) -> str:
        """Returns the reason once a watched task has died."""
        await self._died.wait()
        assert self.reason is not None
        return self.reason

    def _died_of(self, reason: str) -> None:
        if self._closed or self.reason is not None:
            return
        self.reason = reason
        self._died.set()


def spawn(coro: Coroutine[Any, Any, T], name: str, *, may_end: bool = False) -> asyncio.Task[T]:
    """Start `coro` as a watched task. `may_end`: returning on its own is fine (a child's
    watcher); otherwise it must run until its owner cancels or releases it."""
    watch = _current.get()
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(lambda t: _ended(t, watch, may_end))
    return task


def release(task: asyncio.Task[Any]) -> None:
    """The owner is ending `task` (asking it to finish, or cancelling it): not a death."""
    _released.add(task)


async def cancel(task: asyncio.Task[Any]) -> None:
    """The owner's stop: cancel `task` and wait for it; its end is not a death."""
    release(task)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _ended(task: asyncio.Task[Any], watch: TaskWatch | None, may_end: bool) -> None:
    name = task.get_name()
    released = task in _released
    if task.cancelled():
        # Without a watch nobody but the owner or the loop's shutdown cancels: not worth a line.
        if not released and watch is not None and not watch._closed:
            _death(watch, name, f"background task {name} was cancelled", None)
        return
    exc = task.exception()
    if exc is not None:
        if released:
            log.error("task_failed_while_stopping", task=name, error=describe(exc))
        else:
            _death(watch, name, f"background task {name} failed: {describe(exc)}", exc)
        return
    if not may_end and not released:
        _death(watch, name, f"background task {name} ended unexpectedly", None)


def _death(watch: TaskWatch | None, name: str, reason: str, exc: BaseException | None) -> None:
    if watch is not None and watch._closed:
        return
    log.error("task_died", task=name, reason=reason, where=where(exc) if exc else None)
    if watch is not None:
        watch._died_of(reason)
