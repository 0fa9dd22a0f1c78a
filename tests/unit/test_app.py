"""Agent lifecycle details not covered through the process: `once` reports what it cleans up."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from agent.app import Agent
from agent.config import load_config
from agent.snapshot import Change, Snapshot
from tests.support.builders import agent_config, write_atomic, write_config


class BrokenStop:
    async def start(self) -> None: ...

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None: ...

    async def stop(self) -> None:
        raise OSError("cannot stop")


async def test_once_logs_an_output_that_fails_to_stop_and_still_returns(tmp_path: Path) -> None:
    write_atomic(tmp_path / "values.toml", '"/app/a" = "alpha"\n')
    agent = Agent(load_config(write_config(tmp_path / "config.toml", agent_config())))
    await agent.outputs.replace("notify", BrokenStop(), None)
    with capture_logs() as logs:
        result = await agent.once()
    assert result.complete
    (failed,) = [e for e in logs if e["event"] == "output_stop_failed"]
    assert failed["output"] == "notify" and "cannot stop" in failed["error"]
