"""The files output driven by the real Agent and SSM source against moto."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.app import Agent
from agent.config import parse_config
from agent.outputs.files.output import FilesOutput
from agent.outputs.notify.output import NotifyOutput
from agent.snapshot import Change, Snapshot
from tests.support.agents import agent_for, ssm_config
from tests.support.builders import agent_config

SECRET = "pw-that-must-not-leak"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (inode, mtime_ns) of root and everything under it, symlinks not followed."""
    st = root.lstat()
    out = {".": (st.st_ino, st.st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


def _agent(moto_url: str, tmp_path: Path, **files: Any) -> Agent:
    cfg = ssm_config(
        moto_url,
        [{"path": "/app"}],
        tmp_path,
        files={"dir": str(tmp_path / "params"), **files},
    )
    return agent_for(cfg)


def _seed(ssm: Any) -> None:
    ssm.put_parameter(Name="/app/db/url", Value="pg://db/1", Type="String")
    ssm.put_parameter(Name="/app/db/password", Value=SECRET, Type="SecureString")
    ssm.put_parameter(Name="/app/feature/flag", Value="on", Type="String")


async def test_files_are_written_before_notify_and_once_writes_the_set(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    _seed(ssm)
    cfg = ssm_config(
        moto_url,
        [{"path": "/app"}],
        tmp_path,
        files={
            "dir": str(tmp_path / "params"),
            "bundle": [{"path": "db.env", "prefix": "/app/db"}],
        },
        notify={"pid_file": str(tmp_path / "app.pid")},
    )
    agent = agent_for(cfg)
    kinds = [type(o) for o in agent.outputs]
    assert kinds.index(FilesOutput) < kinds.index(NotifyOutput)
    result = await agent.once()
    assert result.complete
    params = tmp_path / "params"
    assert (params / "db" / "url").read_bytes() == b"pg://db/1"
    assert (params / "db" / "password").read_bytes() == SECRET.encode()
    assert (params / "feature" / "flag").read_bytes() == b"on"
    assert (params / "db.env").read_text() == f'DB_PASSWORD="{SECRET}"\nDB_URL="pg://db/1"\n'
    assert os.readlink(params / "db") == "..data/db"


async def test_five_cycles_without_change_leave_every_inode_and_mtime(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    _seed(ssm)
    (tmp_path / "app.conf.j2").write_text('url={{ params["db/url"] }}\n')
    agent = _agent(
        moto_url,
        tmp_path,
        bundle=[{"path": "app.env", "prefix": "/app"}],
        template=[{"source": "app.conf.j2", "path": "app.conf"}],
    )
    params = tmp_path / "params"
    try:
        assert (await agent.refresher.cycle()).complete
        before = _tree(params)
        assert len(before) >= 10
        for _ in range(5):
            result = await agent.refresher.cycle()
            assert result.complete and not result.change
        assert _tree(params) == before

        # A new version with the same value changes the snapshot, not one byte of the set.
        ssm.put_parameter(Name="/app/db/url", Value="pg://db/1", Type="String", Overwrite=True)
        assert (await agent.refresher.cycle()).change.updated
        assert _tree(params) == before

        # A real change does write a new set: the comparison above could fail.
        ssm.put_parameter(Name="/app/db/url", Value="pg://db/2", Type="String", Overwrite=True)
        assert (await agent.refresher.cycle()).change.updated
        assert _tree(params) != before
        assert (params / "db" / "url").read_bytes() == b"pg://db/2"
        assert (params / "app.conf").read_bytes() == b"url=pg://db/2\n"
    finally:
        await agent.stop()


async def test_template_naming_a_missing_key_keeps_its_file_and_the_rest_moves_on(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    _seed(ssm)
    (tmp_path / "app.conf.j2").write_text(
        'url={{ params["db/url"] }}\nflag={{ params["feature/flag"] }}\n'
    )
    agent = _agent(
        moto_url,
        tmp_path,
        bundle=[{"path": "app.env", "prefix": "/app/db"}],
        template=[{"source": "app.conf.j2", "path": "app.conf"}],
    )
    params = tmp_path / "params"
    try:
        assert (await agent.refresher.cycle()).complete
        conf = (params / "app.conf").read_bytes()
        assert conf == b"url=pg://db/1\nflag=on\n"

        ssm.delete_parameter(Name="/app/feature/flag")
        ssm.put_parameter(Name="/app/db/url", Value="pg://db/2", Type="String", Overwrite=True)
        with structlog.testing.capture_logs() as logs:
            result = await agent.refresher.cycle()
        assert result.change.removed and result.change.updated

        assert (params / "app.conf").read_bytes() == conf
        assert (params / "db" / "url").read_bytes() == b"pg://db/2"
        assert 'DB_URL="pg://db/2"' in (params / "app.env").read_text()
        assert not os.path.lexists(params / "feature")
        count = agent.metrics.registry.get_sample_value(
            "ssm_sidecar_template_errors_total", {"template": "app.conf"}
        )
        assert count == 1
        (failed,) = [e for e in logs if e["event"] == "template_failed"]
        assert failed["template"] == "app.conf" and failed["kept"] is True
        assert failed["reason"] == "UndefinedError at line 2: undefined name, attribute or key"
        assert SECRET not in repr(logs) and "pg://db/2" not in repr(logs)
    finally:
        await agent.stop()


async def test_ready_only_once_the_files_are_written_and_before_anyone_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz gates the app's start (a native sidecar's startupProbe): when it says ready, the
    files must be there; and whoever is told (exec child, signal, systemd) is told after it."""
    (tmp_path / "values.toml").write_text('"/app/a" = "x"\n')
    cfg = parse_config(agent_config(files={"dir": "out"}), file=str(tmp_path / "config.toml"))
    agent = Agent(cfg)
    seen: list[tuple[str, bool, bool]] = []

    def record(where: str) -> None:
        seen.append((where, agent.state.ready, (tmp_path / "out" / "a").is_file()))

    files = next(o for o in agent.outputs if isinstance(o, FilesOutput))
    write = files.publish

    async def spy(snapshot: Snapshot, change: Change, first: bool) -> None:
        record("files, before writing")
        await write(snapshot, change, first)

    monkeypatch.setattr(files, "publish", spy)

    class Teller:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
            record("teller")

    await agent.outputs.replace("notify", Teller(), None)
    await agent.refresher.cycle()
    assert seen == [("files, before writing", False, False), ("teller", True, True)]
