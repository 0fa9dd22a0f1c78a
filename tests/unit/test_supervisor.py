"""Exec mode's Supervisor with real child processes: started on the first complete load,
restarted or signalled on a change, its exit code the agent's."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from structlog.testing import capture_logs

from agent.config import ExecConfig
from agent.metrics import Metrics
from agent.snapshot import Change
from agent.supervisor import EXIT_ENV_ERROR, EXIT_NOT_FOUND, Supervisor, child_environment
from tests.support.builders import values_snapshot
from tests.support.child_apps import (
    ENV_REPORTER,
    SIGNAL_RECORDER,
    count_prefix,
    read_lines,
    write_app,
)
from tests.support.waiting import async_wait_until

SECRET_V1 = "first-secret-value"
SECRET_V2 = "second-secret-value"


async def test_supervisor_starts_the_child_on_the_first_load_with_the_values_in_env(
    tmp_path: Path,
) -> None:
    log = tmp_path / "child.log"
    app = write_app(tmp_path, ENV_REPORTER)
    sup = Supervisor(
        [sys.executable, str(app), str(log), "DB_PASSWORD"],
        ExecConfig(on_change="restart", env=True, stop_timeout=2),
        Metrics(),
    )
    await sup.start()
    await sup.publish(values_snapshot({"db/password": SECRET_V1}), Change(), False)
    assert sup.child is None, "only the first complete load starts the child"
    with capture_logs() as logs:
        await sup.publish(values_snapshot({"db/password": SECRET_V1}), Change(), True)
        assert sup.child is not None
        first = sup.child.pid
        await async_wait_until(lambda: f"env {first} {SECRET_V1}" in read_lines(log), 10)
        await sup.publish(values_snapshot({"db/password": SECRET_V1}), Change(), True)
        assert sup.child.pid == first, "a second first-load publish starts nothing"
        delivery = await sup.notify(
            signal.SIGHUP, values_snapshot({"db/password": SECRET_V2}, generation=2)
        )
        assert delivery.outcome == "restart"
        second = sup.child.pid
        assert second != first
        await async_wait_until(lambda: f"env {second} {SECRET_V2}" in read_lines(log), 10)
        assert f"SIGTERM {first}" in read_lines(log)
        assert not sup._exit_future().done(), "a restart is not the child exiting"
        await sup.stop()
    assert sup.exit_code() == 0
    assert SECRET_V1 not in repr(logs) and SECRET_V2 not in repr(logs)


async def test_restart_kills_a_child_that_ignores_sigterm_after_stop_timeout(
    tmp_path: Path,
) -> None:
    log = tmp_path / "child.log"
    app = write_app(tmp_path, ENV_REPORTER)
    sup = Supervisor(
        [sys.executable, str(app), str(log), "TOKEN", "ignore-term"],
        ExecConfig(on_change="restart", env=True, stop_timeout=0.5),
        Metrics(),
    )
    await sup.start()
    await sup.publish(values_snapshot({"token": "v1-token"}), Change(), True)
    assert sup.child is not None
    first = sup.child.pid
    await async_wait_until(lambda: f"env {first} v1-token" in read_lines(log), 10)
    started = time.monotonic()
    with capture_logs() as logs:
        await sup.notify(signal.SIGHUP, values_snapshot({"token": "v2-token"}, generation=2))
    elapsed = time.monotonic() - started
    assert f"SIGTERM {first}" in read_lines(log), "SIGTERM came first"
    assert any(e["event"] == "child_killed" and e["pid"] == first for e in logs)
    assert 0.5 <= elapsed < 5
    second = sup.child.pid
    await async_wait_until(lambda: f"env {second} v2-token" in read_lines(log), 10)
    sup.cfg = ExecConfig(on_change="restart", env=True, stop_timeout=0.2)
    await sup.stop()


async def test_signal_mode_sends_the_notify_signal_and_none_mode_sends_nothing(
    tmp_path: Path,
) -> None:
    log = tmp_path / "child.log"
    app = write_app(tmp_path, SIGNAL_RECORDER)
    sup = Supervisor([sys.executable, str(app), str(log)], ExecConfig(), Metrics())
    await sup.start()
    await sup.publish(values_snapshot({"a": "1"}), Change(), True)
    assert sup.child is not None
    pid = sup.child.pid
    await async_wait_until(lambda: f"ready {pid}" in read_lines(log), 10)
    assert (
        await sup.notify(signal.SIGUSR1, values_snapshot({"a": "2"}, generation=2))
    ).outcome == "sent"
    await async_wait_until(lambda: "SIGUSR1 1" in read_lines(log), 10)
    sup.cfg = ExecConfig(on_change="none")
    assert (
        await sup.notify(signal.SIGUSR1, values_snapshot({"a": "3"}, generation=3))
    ).outcome == "none"
    sup.forward(signal.SIGUSR2)  # a marker: anything sent before it arrived before it
    await async_wait_until(lambda: "SIGUSR2 1" in read_lines(log), 10)
    assert count_prefix(log, "SIGUSR1") == 1
    assert sup.child.pid == pid
    sup.forward(signal.SIGTERM)
    assert await asyncio.wait_for(sup.wait(), 10) == 0
    await sup.stop()


async def test_child_exit_code_is_the_supervisors_and_killed_by_signal_is_128_plus_n(
    tmp_path: Path,
) -> None:
    sup = Supervisor(["sh", "-c", "exit 42"], ExecConfig(), Metrics())
    await sup.start()
    await sup.publish(values_snapshot({"a": "1"}), Change(), True)
    assert await asyncio.wait_for(sup.wait(), 10) == 42
    await sup.stop()

    sup = Supervisor(["sleep", "30"], ExecConfig(), Metrics())
    await sup.start()
    await sup.publish(values_snapshot({"a": "1"}), Change(), True)
    assert sup.child is not None
    sup.forward(signal.SIGINT)
    assert await asyncio.wait_for(sup.wait(), 10) == 128 + signal.SIGINT
    await sup.stop()


async def test_a_terminating_signal_before_the_first_load_means_no_child() -> None:
    sup = Supervisor(["sleep", "30"], ExecConfig(), Metrics())
    await sup.start()
    sup.forward(signal.SIGUSR1)  # not terminating: ignored while there is no child
    assert not sup._exit_future().done()
    sup.forward(signal.SIGTERM)
    assert await asyncio.wait_for(sup.wait(), 1) == 143
    await sup.publish(values_snapshot({"a": "1"}), Change(), True)
    assert sup.child is None
    await sup.stop()


async def test_env_names_that_collide_stop_the_start_with_a_clear_error() -> None:
    sup = Supervisor(["sleep", "30"], ExecConfig(on_change="restart", env=True), Metrics())
    await sup.start()
    with capture_logs() as logs:
        await sup.publish(values_snapshot({"db/url": "x-one", "db_url": "x-two"}), Change(), True)
    assert sup.child is None
    assert await asyncio.wait_for(sup.wait(), 1) == EXIT_ENV_ERROR
    (event,) = [e for e in logs if e["event"] == "child_env_invalid"]
    assert "db/url" in event["reason"] and "DB_URL" in event["reason"]
    assert "x-one" not in repr(logs)


async def test_a_command_that_does_not_exist_exits_127() -> None:
    sup = Supervisor(["/nonexistent/app"], ExecConfig(), Metrics())
    await sup.start()
    await sup.publish(values_snapshot({"a": "1"}), Change(), True)
    assert await asyncio.wait_for(sup.wait(), 1) == EXIT_NOT_FOUND


def test_child_environment_normalizes_names_and_keeps_the_rest() -> None:
    env = child_environment(
        values_snapshot({"db/url": "u", "api-key.v2": "k"}), base={"PATH": "/bin", "DB_URL": "old"}
    )
    assert env == {"PATH": "/bin", "DB_URL": "u", "API_KEY_V2": "k"}
