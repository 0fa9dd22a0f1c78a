"""The real process: a background task that dies ends the agent with exit 1 and a one-line reason.

The process is the real CLI (`agent.cli.main`) started through a two-line wrapper that breaks one
task from inside: the file source's watcher raises after a moment, as a watcher that lost its
inotify instance would. Nothing else is changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.builders import write_config
from tests.support.processes import REPO, AgentProcess

BREAK_THE_WATCHER = """
import asyncio, sys
sys.path.insert(0, REPO)
from agent.sources.file import FileSource

async def changes(self):
    await asyncio.sleep(0.5)
    raise OSError(24, "Too many open files")
    yield

FileSource.changes = changes
from agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_dead_watcher_ends_the_agent_with_exit_1_and_one_line(tmp_path: Path) -> None:
    (tmp_path / "values.toml").write_text('"/app/a" = "alpha"\n')
    config = write_config(
        tmp_path / "config.toml",
        {
            "source": {"type": "file", "path": "values.toml"},
            "parameters": [{"path": "/app"}],
            "http": {"enabled": False},
            "files": {"dir": "params"},
        },
    )
    wrapper = tmp_path / "broken_watcher.py"
    wrapper.write_text(BREAK_THE_WATCHER.replace("REPO", repr(str(REPO))))
    command = [sys.executable, str(wrapper), "run", "-c", str(config)]
    with AgentProcess(command=command) as agent:
        code = agent.wait(15)
    assert code == 1, agent.log_text()
    text = agent.log_text()
    assert "Traceback" not in text
    died = [e for e in agent.events() if e.get("event") == "task_died"]
    assert len(died) == 1 and died[0]["task"] == "source-watch"
    last = agent.lines[-1]
    assert last == (
        "ssm-sidecar: background task source-watch failed: OSError: [Errno 24] Too many open files"
    )
    assert [e["event"] for e in agent.events()][-1] == "stopped"
