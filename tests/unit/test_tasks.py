"""Background tasks cannot die unseen: `agent.tasks.spawn` and the agent's TaskWatch."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from structlog.testing import capture_logs

from agent import tasks

ROOT = Path(__file__).resolve().parents[2]

# Futures created and awaited inside one HTTP request, not background tasks.
REQUEST_SCOPED = {"agent/outputs/http/routes/v1.py", "agent/outputs/http/ondemand.py"}


async def _forever() -> None:
    await asyncio.Event().wait()


async def _boom(after: float = 0.0) -> None:
    await asyncio.sleep(after)
    raise RuntimeError("boom")


async def _returns() -> None:
    await asyncio.sleep(0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_task_that_raises_is_a_death_with_a_one_line_reason() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    with capture_logs() as logs:
        tasks.spawn(_boom(), "worker")
        reason = await asyncio.wait_for(watch.wait(), 5)
    assert reason == "background task worker failed: RuntimeError: boom"
    died = [e for e in logs if e["event"] == "task_died"]
    assert len(died) == 1 and died[0]["task"] == "worker" and died[0]["log_level"] == "error"
    assert "test_tasks.py" in died[0]["where"]


async def test_a_forever_task_that_returns_is_a_death() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    tasks.spawn(_returns(), "loop")
    assert await asyncio.wait_for(watch.wait(), 5) == "background task loop ended unexpectedly"


async def test_a_task_cancelled_by_someone_else_is_a_death() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    task = tasks.spawn(_forever(), "loop")
    await _settle()
    task.cancel()
    assert await asyncio.wait_for(watch.wait(), 5) == "background task loop was cancelled"


async def test_an_owner_that_cancels_its_task_is_no_death() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    task = tasks.spawn(_forever(), "loop")
    await _settle()
    await tasks.cancel(task)
    assert task.done()
    tasks.release(tasks.spawn(_returns(), "flushed"))  # the owner asked it to end
    await _settle()
    assert watch.reason is None


async def test_a_task_that_may_end_is_only_a_death_when_it_raises() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    tasks.spawn(_returns(), "child-watch", may_end=True)
    await _settle()
    assert watch.reason is None
    tasks.spawn(_boom(), "child-watch", may_end=True)
    assert "RuntimeError" in await asyncio.wait_for(watch.wait(), 5)


async def test_ends_after_close_are_the_agent_stopping_not_deaths() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    task = tasks.spawn(_forever(), "loop")
    await _settle()
    watch.close()
    task.cancel()
    await _settle()
    assert watch.reason is None


async def test_only_the_first_death_is_the_reason() -> None:
    watch = tasks.TaskWatch()
    watch.install()
    tasks.spawn(_boom(), "first")
    tasks.spawn(_boom(0.05), "second")
    assert "first" in await asyncio.wait_for(watch.wait(), 5)
    await asyncio.sleep(0.1)
    assert watch.reason is not None and "first" in watch.reason


async def test_without_a_watch_a_death_is_still_logged() -> None:
    with capture_logs() as logs:
        task = tasks.spawn(_boom(), "orphan")
        await asyncio.gather(task, return_exceptions=True)
        await _settle()
    assert [e["task"] for e in logs if e["event"] == "task_died"] == ["orphan"]


async def test_a_secret_in_the_exception_text_is_not_in_the_reason() -> None:
    from agent.logs import redactor

    redactor.update(["hunter2-secret"])
    try:
        watch = tasks.TaskWatch()
        watch.install()

        async def leaky() -> None:
            raise ValueError("bad value hunter2-secret")

        tasks.spawn(leaky(), "leaky")
        reason = await asyncio.wait_for(watch.wait(), 5)
    finally:
        redactor.update([])
    assert "hunter2-secret" not in reason and "ValueError" in reason


def test_every_task_in_the_agent_goes_through_spawn() -> None:
    """A bare asyncio.create_task/ensure_future is a task nobody watches."""
    offenders = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "agent/tasks.py" or rel in REQUEST_SCOPED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("create_task", "ensure_future"):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == [], f"use agent.tasks.spawn: {offenders}"
