"""Config reload: what changed, a bad file keeps the running config, a good one applies live."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from agent.app import Agent
from agent.config import load_config
from agent.outputs.notify import NotifyOutput
from agent.reload import config_changes, plan_reload, read_config
from agent.snapshot import Snapshot
from tests.support.child_apps import write_atomic, write_config
from tests.support.waiting import async_wait_until


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    write_atomic(tmp_path / "values.toml", '"/app/a" = "alpha-value"\n"/other/b" = "beta-value"\n')
    return {
        "source": {"type": "file", "path": "values.toml"},
        "parameters": [{"path": "/app"}],
        "refresh": {"interval": "30s", "jitter": 0.0},
        "http": {"enabled": False},
        "files": {"dir": "params"},
        **extra,
    }


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
        async for event in config_changes(tmp_path / "config.toml"):
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
