"""The SSM call budget is applied to the agent's real calls, without a fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy


async def test_calls_beyond_the_burst_are_spaced_at_the_configured_rate(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for i in range(50):
        ssm.put_parameter(Name=f"/app/p{i:02d}", Value=str(i), Type="String")
    cfg = ssm_config(fault_proxy.url, [{"path": "/app"}], tmp_path)
    cfg = cfg.model_copy(
        update={
            "source": cfg.source.model_copy(
                update={"max_calls_per_second": 4.0, "max_calls_burst": 4}
            )
        }
    )
    agent = agent_for(cfg)
    result = await agent.once()
    assert result.complete and len(agent.state.snapshot) == 50
    times = [c.at for c in fault_proxy.calls() if c.operation == "GetParametersByPath"]
    assert len(times) >= 6  # 50 names: 5 pages (+ moto's empty last page)
    burst = 4
    # Past the burst the bucket is empty: each further call waits for its own token.
    for k in range(burst + 1, len(times)):
        assert times[k] - times[burst] >= (k - burst) / 4.0 * 0.9, (k, times)
