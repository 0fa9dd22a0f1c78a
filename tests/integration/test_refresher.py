"""The poll loop survives any exception a cycle raises, not only a SourceError.

The fault: SSM (moto behind the fault proxy) answers GetParametersByPath with HTTP 200 and a body
botocore accepts but whose parameters have no `Name`, so the cycle fails inside the agent's own
code with a KeyError: an unexpected exception, not a SourceError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from tests.support.agents import agent_for, served, ssm_config
from tests.support.fault_proxy import FaultProxy
from tests.support.waiting import async_wait_until

NAMELESS = json.dumps({"Parameters": [{"Type": "String", "Value": "x", "Version": 1}]})


def _unexpected(agent: Any) -> float:
    return float(agent.metrics.refresh_errors.labels(kind="unexpected")._value.get())


async def test_an_unexpected_exception_is_logged_once_counted_shown_and_the_loop_goes_on(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/u/a", Value="before-1", Type="String")
    cfg = ssm_config(
        fault_proxy.url, [{"path": "/u"}], tmp_path, interval="200ms", max_backoff="300ms"
    )
    agent = agent_for(cfg)
    with capture_logs() as logs:
        await agent.start()
        try:
            await async_wait_until(lambda: agent.state.ready, 10)
            fault_proxy.add_fault("GetParametersByPath", "reply", status=200, message=NAMELESS)
            await async_wait_until(lambda: _unexpected(agent) >= 4, 15, what="4 failed cycles")

            health = agent.state.health()
            assert health.ready, "still ready: the last good values are served"
            assert health.consecutive_failures >= 4
            assert health.last_error is not None and "KeyError" in health.last_error
            assert served(agent, "/u/a") == "before-1"
            crashes = [e for e in logs if e["event"] == "refresh_unexpected_error"]
            assert len(crashes) == 1, "logged once per kind of exception, not every cycle"
            assert crashes[0]["log_level"] == "error"
            assert "KeyError" in crashes[0]["error"] and crashes[0]["where"]

            # The loop is alive: once SSM answers properly again, the next cycle takes the change.
            ssm.put_parameter(Name="/u/a", Value="after-2", Type="String", Overwrite=True)
            fault_proxy.clear_faults()
            await async_wait_until(lambda: served(agent, "/u/a") == "after-2", 10)
            assert agent.state.consecutive_failures == 0
            assert agent.state.last_error is None
            assert any(e["event"] == "refresh_recovered" for e in logs)
        finally:
            await agent.stop()
    assert not any("before-1" in str(e) or "after-2" in str(e) for e in logs)


async def test_a_cycle_that_raises_is_a_failed_cycle_for_refresh_now_too(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """`POST /v1/refresh` and a reload call the cycle directly: they get a result, not a raise."""
    ssm.put_parameter(Name="/u/a", Value="v", Type="String")
    agent = agent_for(ssm_config(fault_proxy.url, [{"path": "/u"}], tmp_path))
    try:
        fault_proxy.add_fault("GetParametersByPath", "reply", status=200, message=NAMELESS)
        result = await agent.refresher.refresh_now()
        assert not result.ok and not result.complete
        assert result.reason is not None and "KeyError" in result.reason
        assert not agent.state.ready
        fault_proxy.clear_faults()
        assert (await agent.refresher.refresh_now()).complete
    finally:
        await agent.stop()
