"""Config reload: what changed, a bad file keeps the running config, a good one applies live."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from agent.app import Agent
from agent.config import load_config
from agent.dirwatch import watch_file
from agent.outputs.notify.output import NotifyOutput
from agent.reload import plan_reload, read_config
from agent.snapshot import Snapshot
from tests.support.builders import agent_config, write_atomic, write_config
from tests.support.child_apps import HUP_READER, read_lines, stop_app, write_app
from tests.support.moto import free_port
from tests.support.waiting import async_wait_until


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    write_atomic(tmp_path / "values.toml", '"/app/a" = "alpha-value"\n"/other/b" = "beta-value"\n')
    sections = {"refresh": {"interval": "30s", "jitter": 0.0}, "files": {"dir": "params"}}
    return agent_config(**{**sections, **extra})


def test_plan_names_each_changed_section(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", _config(tmp_path))
    old = load_config(path)
    same = plan_reload(old, load_config(path))
    assert same.changed == []
    data = _config(
        tmp_path,
        notify={"pid_file": "app.pid"},
        exec={"on_change": "restart"},
        log={"level": "debug"},
    )
    data["parameters"] = [{"path": "/app"}, {"path": "/other"}]
    data["refresh"] = {"interval": "5s"}
    data["http"] = {"enabled": False, "listen": "127.0.0.1:9999"}
    new = load_config(write_config(tmp_path / "config.toml", data))
    plan = plan_reload(old, new)
    assert plan.changed == ["source", "refresh", "notify", "exec", "http", "log"]
    assert plan.needs_restart == ("http", "log")


def test_a_broken_file_is_logged_with_its_reason_and_gives_no_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[parameters]]\npath = "/app"\n[refresh]\ninterval = "soon"\n')
    with capture_logs() as logs:
        assert read_config(path) is None
    (event,) = logs
    assert event["event"] == "config_reload_failed"
    assert event["log_level"] == "error"
    assert f"{path}: refresh.interval:" in event["error"]


async def test_adding_a_path_applies_live_and_serving_never_has_a_gap(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", _config(tmp_path))
    agent = Agent(load_config(path), rng=random.Random(1))
    seen: list[Snapshot] = []
    agent.state.on_swap.append(seen.append)
    state = agent.state
    await agent.start()
    try:
        params = tmp_path / "params"
        await async_wait_until(lambda: (params / "a").exists(), 10, what="first set written")
        assert (params / "a").read_text() == "alpha-value"
        data = _config(tmp_path)
        data["parameters"] = [{"path": "/app"}, {"path": "/other"}]
        old_source = agent.source
        await agent.apply_config(load_config(write_config(path, data)))
        assert agent.state is state and state.ready
        assert agent.source is not old_source
        assert state.snapshot.get("/other/b") is not None
        assert (params / "b").read_text() == "beta-value"
        # Every snapshot ever served held the first path's value: no gap while reloading.
        assert all(s.get("/app/a") is not None for s in seen)
    finally:
        await agent.stop()


async def test_http_and_log_changes_are_reported_as_needing_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", _config(tmp_path))
    agent = Agent(load_config(path), rng=random.Random(1))
    await agent.start()
    try:
        await async_wait_until(lambda: agent.state.ready, 10)
        data = _config(tmp_path, log={"level": "debug"})
        with capture_logs() as logs:
            await agent.apply_config(load_config(write_config(path, data)))
        restart = [e["section"] for e in logs if e["event"] == "config_reload_needs_restart"]
        assert restart == ["log"]
        assert agent.cfg.log.level == "info", "the running log config stays"
    finally:
        await agent.stop()


async def test_a_changed_notify_section_replaces_the_output_without_a_signal(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path / "config.toml", _config(tmp_path, notify={"command": ["true"]}))
    agent = Agent(load_config(path), rng=random.Random(1))
    await agent.start()
    try:
        await async_wait_until(lambda: agent.state.ready, 10)
        (old,) = [o for o in agent.outputs if isinstance(o, NotifyOutput)]
        marker = tmp_path / "ran"
        data = _config(tmp_path, notify={"command": ["touch", str(marker)], "debounce": "0s"})
        with capture_logs() as logs:
            await agent.apply_config(load_config(write_config(path, data)))
        (new,) = [o for o in agent.outputs if isinstance(o, NotifyOutput)]
        assert new is not old and new.cfg.command == ("touch", str(marker))
        assert not any(e["event"] == "notify_command_done" for e in logs)
        # A value change now reaches the new output.
        write_atomic(tmp_path / "values.toml", '"/app/a" = "alpha-2"\n')
        await async_wait_until(marker.exists, 10, what="new command ran after a change")
    finally:
        await agent.stop()


async def test_a_configmap_style_symlink_swap_counts_as_an_edit(tmp_path: Path) -> None:
    """Kubernetes updates a mounted ConfigMap by swapping `..data`, not by writing the file."""
    versions = 0

    def publish_version() -> None:
        # As the kubelet does: a new timestamped dir, then `..data` renamed over.
        nonlocal versions
        versions += 1
        (tmp_path / f"..v{versions}").mkdir()
        (tmp_path / f"..v{versions}" / "config.toml").write_text(f"# version {versions}\n")
        (tmp_path / "..tmp").symlink_to(f"..v{versions}")
        os.replace(tmp_path / "..tmp", tmp_path / "..data")

    publish_version()
    (tmp_path / "config.toml").symlink_to("..data/config.toml")
    seen: list[None] = []

    async def collect() -> None:
        async for event in watch_file(tmp_path / "config.toml"):
            seen.append(event)

    task = asyncio.create_task(collect())

    def published_and_seen() -> bool:
        publish_version()  # the watcher starts a moment after the task: repeat until seen
        return bool(seen)

    try:
        await async_wait_until(published_and_seen, 10, interval=0.3, what="swap seen")
        count = len(seen)
        publish_version()  # with the watcher running, each swap is seen
        await async_wait_until(lambda: len(seen) > count, 10, what="the next swap seen")
    finally:
        task.cancel()


def lines_with(log: Path, text: str) -> list[str]:
    return [line for line in read_lines(log) if text in line]


async def test_notify_added_by_reload_signals_only_after_the_files_are_written(
    tmp_path: Path,
) -> None:
    """With an ops listener and [files], a reload that adds [notify] once put the signal
    before the files: the app was told of a change its file did not hold yet."""
    port, ops_port = free_port(), free_port()
    data = _config(tmp_path)
    data["http"] = {
        "listen": f"127.0.0.1:{port}",
        "ops_listen": f"127.0.0.1:{ops_port}",
        "token_file": str(tmp_path / "token"),
    }
    path = write_config(tmp_path / "config.toml", data)
    agent = Agent(load_config(path), rng=random.Random(1))
    await agent.start()
    app_log, app = tmp_path / "app.log", None
    try:
        await async_wait_until(lambda: agent.state.ready, 10)
        url = f"http://127.0.0.1:{port}/v1/parameters/app/a"
        reader = write_app(tmp_path, HUP_READER, "reader.py")
        file = tmp_path / "params" / "a"
        app = subprocess.Popen(
            [sys.executable, str(reader), str(app_log), str(file), url, str(tmp_path / "token")]
        )
        (tmp_path / "app.pid").write_text(f"{app.pid}\n")
        await async_wait_until(lambda: read_lines(app_log), 10, what="the app's first look")
        data["notify"] = {"pid_file": "app.pid", "debounce": "0s"}
        await agent.apply_config(load_config(write_config(path, data)))
        assert agent.outputs.slots() == ["http", "ops", "files", "notify"]
        for n in range(2, 5):
            value = f"alpha-{n}"
            write_atomic(tmp_path / "values.toml", f'"/app/a" = "{value}"\n')
            await agent.refresher.cycle()
            seen = await async_wait_until(
                functools.partial(lines_with, app_log, value), 10, what=f"the app told of {value}"
            )
            assert seen == [f"{value} {value}"], "the file held an older value when signalled"
    finally:
        if app is not None:
            stop_app(app)
        await agent.stop()
