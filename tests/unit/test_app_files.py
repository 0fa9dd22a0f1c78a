"""The agent and its files output: readiness waits for the set on disk; files.dir is checked
before anything starts; a reload that moves files.dir leaves no values in the old one."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.config import load_config
from agent.outputs.files import UnsafeDirectoryError
from agent.outputs.http.routes.ops import health_body
from tests.support.builders import agent_config, write_atomic, write_config
from tests.support.waiting import async_wait_until

SECRET = "s3cret-value-7f1d"


def _config(tmp_path: Path, files: dict[str, Any] | None) -> dict[str, Any]:
    write_atomic(tmp_path / "values.toml", f'"/app/db/password" = "{SECRET}"\n"/app/top" = "t"\n')
    with_files = {} if files is None else {"files": files}
    return agent_config(refresh={"interval": "30s", "jitter": 0.0}, **with_files)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Agent, Path]]:
    path = write_config(tmp_path / "config.toml", _config(tmp_path, {"dir": "params"}))
    agent = Agent(load_config(path), rng=random.Random(1))
    await agent.start()
    try:
        await async_wait_until(lambda: agent.state.ready, 10, what="ready")
        yield agent, path
    finally:
        await agent.stop()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _holds_secret(root: Path) -> bool:
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if not path.is_symlink() and SECRET in path.read_text(errors="replace"):
                return True
    return False


async def test_a_reload_that_moves_files_dir_cleans_only_what_the_agent_wrote_there(
    running: tuple[Agent, Path], tmp_path: Path
) -> None:
    agent, path = running
    old = tmp_path / "params"
    assert (old / "db" / "password").read_text() == SECRET
    (old / "notes.txt").write_text("the operator's")
    os.symlink("/etc/hostname", old / "theirs")
    await agent.apply_config(load_config(write_config(path, _config(tmp_path, {"dir": "moved"}))))
    assert (tmp_path / "moved" / "db" / "password").read_text() == SECRET
    assert _tree(old) == ["notes.txt", "theirs"]
    assert not _holds_secret(old)
    assert agent.state.files is not None and agent.state.files.dir == str(tmp_path / "moved")


async def test_a_files_dir_the_agent_created_is_removed_when_it_moves_on(
    running: tuple[Agent, Path], tmp_path: Path
) -> None:
    agent, path = running
    await agent.apply_config(
        load_config(write_config(path, _config(tmp_path, {"dir": "run/moved"})))
    )
    assert not os.path.lexists(tmp_path / "params")
    assert (tmp_path / "run" / "moved" / "top").read_text() == "t"


async def test_a_reload_that_removes_files_cleans_the_directory(
    running: tuple[Agent, Path], tmp_path: Path
) -> None:
    agent, path = running
    await agent.apply_config(load_config(write_config(path, _config(tmp_path, None))))
    assert not os.path.lexists(tmp_path / "params")
    assert agent.state.files is None
    assert health_body(agent.state.health(), 2, 0.0)["files"] is None


async def test_a_reload_to_a_refused_files_dir_keeps_the_old_files_until_one_is_written(
    running: tuple[Agent, Path], tmp_path: Path
) -> None:
    agent, path = running
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, tmp_path / "planted")
    await agent.apply_config(load_config(write_config(path, _config(tmp_path, {"dir": "planted"}))))
    assert os.listdir(victim) == []
    files = health_body(agent.state.health(), 2, 0.0)["files"]
    assert isinstance(files, dict) and files["state"] == "failing"
    assert "is a symlink" in str(files["error"])
    assert agent.outputs.held
    # The app still finds its files where they were: nothing else holds them yet.
    assert (tmp_path / "params" / "db" / "password").read_text() == SECRET
    # The operator fixes it: the next write lands and only then the old directory goes.
    os.unlink(tmp_path / "planted")
    await async_wait_until(lambda: not agent.outputs.held, 10, what="the retry writes the set")
    assert (tmp_path / "planted" / "db" / "password").read_text() == SECRET
    assert not os.path.lexists(tmp_path / "params")


async def test_ready_waits_until_the_first_set_is_on_disk(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", _config(tmp_path, {"dir": "params"}))
    (tmp_path / "params").mkdir(mode=0o700)
    (tmp_path / "params" / "..data").mkdir()  # not the agent's: the set cannot be swapped in
    agent = Agent(load_config(path), rng=random.Random(1))
    await agent.start()
    try:
        await async_wait_until(
            lambda: agent.state.files is not None and agent.state.files.failures >= 2,
            10,
            what="the first write failed and was retried",
        )
        assert not agent.state.ready
        body = health_body(agent.state.health(), len(agent.state.snapshot), 0.0)
        assert body["ready"] is False
        assert isinstance(body["files"], dict) and body["files"]["state"] == "failing"
        assert SECRET not in str(body)
        (tmp_path / "params" / "..data").rmdir()
        await async_wait_until(lambda: agent.state.ready, 10, what="ready once written")
        assert (tmp_path / "params" / "db" / "password").read_text() == SECRET
        assert agent.state.files is not None and agent.state.files.state == "ok"
    finally:
        await agent.stop()


async def test_an_unsafe_files_dir_stops_the_agent_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "params").mkdir(mode=0o777)
    (tmp_path / "params").chmod(0o777)
    path = write_config(tmp_path / "config.toml", _config(tmp_path, {"dir": "params"}))
    agent = Agent(load_config(path), rng=random.Random(1))
    with pytest.raises(UnsafeDirectoryError, match="writable by group or others"):
        await agent.start()
    await agent.stop()
    assert os.listdir(tmp_path / "params") == []
