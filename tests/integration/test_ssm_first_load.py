"""The first load fetches in parallel within a bound; later cycles stay one call at a time.

Every call is delayed at the fault proxy, so calls that overlap arrive together and calls that
wait for each other arrive at least one delay apart: the arrival times show the concurrency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.sources.ssm import FIRST_LOAD_CONCURRENCY
from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy

DELAY = 0.4
PATHS = 12  # more than the bound


def most_within(arrivals: list[float], window: float) -> int:
    """The largest number of arrivals inside any window of `window` seconds."""
    arrivals = sorted(arrivals)
    return max(sum(1 for b in arrivals[i:] if b - a < window) for i, a in enumerate(arrivals))


def _seed(ssm: Any) -> dict[str, str]:
    values = {}
    for g in range(PATHS):
        for i in range(3):
            name = f"/fl/g{g:02d}/p{g:02d}{i}"
            kind = "SecureString" if i == 0 else "String"
            ssm.put_parameter(Name=name, Value=f"v-{g}-{i}", Type=kind)
            values[name] = f"v-{g}-{i}"
    return values


async def test_first_load_overlaps_calls_up_to_the_bound_and_later_cycles_do_not(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    values = _seed(ssm)
    parameters: list[dict[str, Any]] = [{"path": f"/fl/g{g:02d}"} for g in range(PATHS)]
    agent = agent_for(ssm_config(fault_proxy.url, parameters, tmp_path))
    fault_proxy.add_fault(None, "delay", delay=DELAY)
    try:
        first = await agent.refresher.cycle()
        assert first.complete and not first.errors
        assert {p.name: p.value for p in agent.state.snapshot} == values
        arrivals = [c.at for c in fault_proxy.calls()]
        # Listing pages of several paths, then the decryption chunks, side by side...
        assert most_within(arrivals, DELAY * 0.5) >= FIRST_LOAD_CONCURRENCY // 2
        # ...never more at once than the bound (the next call waits for one to finish).
        assert most_within(arrivals, DELAY * 0.9) <= FIRST_LOAD_CONCURRENCY

        fault_proxy.reset_calls()
        again = await agent.refresher.cycle()
        assert again.complete and not again.errors
        later = [c.at for c in fault_proxy.calls()]
        assert len(later) >= PATHS
        assert most_within(later, DELAY * 0.9) == 1  # a steady cycle spares the account's quota
    finally:
        fault_proxy.clear_faults()
        await agent.source.close()
