"""Every background task of a running Agent is watched: one that dies ends `run` with exit 1.

The agent runs in this test's event loop, so its tasks can be found by name and killed (cancelled
from outside, as nobody in the agent would) or made to raise inside their own code.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.app import Agent
from agent.config import load_config
from tests.support.builders import write_config
from tests.support.waiting import async_wait_until

LONG_LIVED = ("refresher", "reload", "config-watch", "source-watch", "notify", "systemd-notify")


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A datagram socket standing in for systemd, so the systemd output (and its loop) runs."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield path
    finally:
        sock.close()


def _agent(tmp_path: Path) -> Agent:
    (tmp_path / "values.toml").write_text('"/app/a" = "alpha"\n')
    (tmp_path / "app.pid").write_text("999999999\n")
    config = write_config(
        tmp_path / "config.toml",
        {
            "source": {"type": "file", "path": "values.toml"},
            "parameters": [{"path": "/app"}],
            "refresh": {"interval": "200ms", "jitter": 0.0, "max_backoff": "1s"},
            "http": {"enabled": False},
            "files": {"dir": "params"},
            "notify": {"pid_file": "app.pid", "debounce": "50ms"},
        },
    )
    return Agent(load_config(config))


def _task(name: str) -> asyncio.Task[Any] | None:
    return next((t for t in asyncio.all_tasks() if t.get_name() == name), None)


async def _run_until_ready(agent: Agent) -> tuple[asyncio.Event, asyncio.Task[int]]:
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await async_wait_until(lambda: agent.state.ready or run.done(), 10, what="ready")
    assert not run.done()
    return stop, run


@pytest.mark.usefixtures("notify_socket")
@pytest.mark.parametrize("name", LONG_LIVED)
async def test_a_killed_background_task_ends_the_agent_with_exit_1(
    tmp_path: Path, name: str
) -> None:
    agent = _agent(tmp_path)
    with capture_logs() as logs:
        stop, run = await _run_until_ready(agent)
        try:
            # (A Task is awaitable: async_wait_until would await it, so wait on its name.)
            await async_wait_until(lambda: _task(name) is not None, 5, what=f"task {name}")
            task = _task(name)
            assert task is not None
            task.cancel()
            code = await asyncio.wait_for(run, 10)
        finally:
            stop.set()
    assert code == 1
    assert agent.failure == f"background task {name} was cancelled"
    events = [e["event"] for e in logs]
    assert "task_died" in events and events[-1] == "stopped", events


async def test_a_poll_loop_that_raises_outside_a_cycle_ends_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _agent(tmp_path)

    def broken_delay(*args: Any) -> float:
        raise ZeroDivisionError("float division by zero")

    stop, run = await _run_until_ready(agent)
    monkeypatch.setattr(agent.refresher, "next_delay", broken_delay)
    try:
        agent.refresher.trigger()
        code = await asyncio.wait_for(run, 10)
    finally:
        stop.set()
    assert code == 1
    assert (
        agent.failure
        == "background task refresher failed: ZeroDivisionError: float division by zero"
    )


async def test_stopping_normally_is_exit_0_and_no_death(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    with capture_logs() as logs:
        stop, run = await _run_until_ready(agent)
        stop.set()
        assert await asyncio.wait_for(run, 10) == 0
    assert agent.failure is None
    assert not any(e["event"] == "task_died" for e in logs)
