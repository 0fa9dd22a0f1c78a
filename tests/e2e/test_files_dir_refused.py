"""The real agent refuses an unsafe files.dir at start: exit 1, one line naming files.dir, and
nothing written or served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.child_apps import write_atomic, write_config
from tests.support.processes import AgentProcess


def _config(tmp_path: Path) -> Path:
    write_atomic(tmp_path / "values.toml", '"/app/key" = "value-that-must-stay-put"\n')
    return write_config(
        tmp_path / "config.toml",
        {
            "source": {"type": "file", "path": "values.toml"},
            "parameters": [{"path": "/app"}],
            "http": {"enabled": False},
            "files": {"dir": "params"},
        },
    )


@pytest.mark.parametrize("command", ["run", "once"])
def test_a_files_dir_planted_as_a_symlink_stops_the_agent_with_one_line(
    tmp_path: Path, command: str
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, tmp_path / "params")
    config = _config(tmp_path)
    agent = AgentProcess(command, "-c", str(config))
    assert agent.wait(20) == 1
    lines = [line for line in agent.lines if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ssm-sidecar: files.dir: {tmp_path / 'params'} is a symlink")
    assert os.listdir(victim) == []
