"""The real agent refuses an unsafe files.dir at start: exit 1, one line naming files.dir, and
nothing written or served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.builders import write_file_source
from tests.support.processes import AgentProcess


@pytest.mark.parametrize("command", ["run", "once"])
def test_a_files_dir_planted_as_a_symlink_stops_the_agent_with_one_line(
    tmp_path: Path, command: str
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, tmp_path / "params")
    values = '"/app/key" = "value-that-must-stay-put"\n'
    config = write_file_source(tmp_path, values, files={"dir": "params"})
    agent = AgentProcess(command, "-c", str(config))
    assert agent.wait(20) == 1
    # One line for the operator; the JSON log events around it are the log's, not the error's.
    lines = [line for line in agent.lines if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ssm-sidecar: files.dir: {tmp_path / 'params'} is a symlink")
    assert os.listdir(victim) == []
