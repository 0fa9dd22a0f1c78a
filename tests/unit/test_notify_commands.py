"""The notify command: its exit code and a missing command reported, a hung one killed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from structlog.testing import capture_logs

from agent.metrics import Metrics
from agent.outputs.notify.commands import run_command


async def test_command_that_hangs_is_killed_after_its_timeout(tmp_path: Path) -> None:
    metrics = Metrics()
    started = time.monotonic()
    code = await run_command(["sleep", "30"], 0.3, metrics)
    assert code is None
    assert time.monotonic() - started < 5
    assert metrics.registry.get_sample_value(
        "ssm_sidecar_notify_commands_total", {"outcome": "timeout"}
    )


async def test_command_exit_code_and_a_missing_command_are_reported() -> None:
    metrics = Metrics()
    with capture_logs() as logs:
        assert await run_command(["sh", "-c", "exit 3"], 5, metrics) == 3
        assert await run_command([f"/nonexistent/{uuid.uuid4().hex}"], 5, metrics) is None
    events = {e["event"]: e for e in logs}
    assert events["notify_command_done"]["exit_code"] == 3
    assert "notify_command_failed" in events
    assert (
        metrics.registry.get_sample_value(
            "ssm_sidecar_notify_commands_total", {"outcome": "failed"}
        )
        == 2
    )
