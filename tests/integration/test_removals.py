"""A cycle that would remove more than `refresh.max_removal_share` of the set is held until the
next cycle confirms it: a listing that comes back short removes nothing, files included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy

EMPTY_PAGE = json.dumps({"Parameters": []})


def _held(agent: Any) -> float:
    return float(agent.metrics.removals_held._value.get())


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if not p.name.startswith("..")}


async def test_a_listing_cut_short_mid_way_removes_nothing(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    names = [f"p{i:02d}" for i in range(25)]
    for n in names:
        ssm.put_parameter(Name=f"/r/{n}", Value=f"value-{n}", Type="String")
    params_dir = tmp_path / "params"
    agent = agent_for(
        ssm_config(fault_proxy.url, [{"path": "/r"}], tmp_path, files={"dir": str(params_dir)})
    )
    try:
        assert (await agent.refresher.cycle()).complete
        assert _files(params_dir) == set(names)

        # Page 2 of the listing answers "no more" (no NextToken): the listing stops at 10 of 25.
        fault_proxy.add_fault(
            "GetParametersByPath",
            "reply",
            status=200,
            message=EMPTY_PAGE,
            match="NextToken",
            times=1,
        )
        with capture_logs() as logs:
            result = await agent.refresher.cycle()
        assert fault_proxy.count("GetParametersByPath", include_faulted=True) >= 2
        assert result.complete and not result.change, "nothing removed"
        assert len(agent.state.snapshot) == 25
        assert _files(params_dir) == set(names)
        assert _held(agent) == 1
        held = [e for e in logs if e["event"] == "removal_held"]
        assert len(held) == 1 and held[0]["removing"] == 15 and held[0]["serving"] == 25

        # The next cycle lists all 25 again: nothing was ever removed.
        result = await agent.refresher.cycle()
        assert not result.change
        assert _files(params_dir) == set(names)
    finally:
        await agent.stop()


async def test_deleting_4_of_5_is_held_one_cycle_then_confirmed(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    for n in "abcde":
        ssm.put_parameter(Name=f"/r/{n}", Value=f"value-{n}", Type="String")
    params_dir = tmp_path / "params"
    agent = agent_for(
        ssm_config(moto_url, [{"path": "/r"}], tmp_path, files={"dir": str(params_dir)})
    )
    try:
        await agent.refresher.cycle()
        ssm.delete_parameters(Names=[f"/r/{n}" for n in "abcd"])
        with capture_logs() as logs:
            held = await agent.refresher.cycle()
            assert not held.change and _files(params_dir) == set("abcde")
            confirmed = await agent.refresher.cycle()
        assert sorted(c.name for c in confirmed.change.removed) == [f"/r/{n}" for n in "abcd"]
        assert _files(params_dir) == {"e"}
        assert [e["event"] for e in logs if e["event"].startswith("removal_")] == [
            "removal_held",
            "removal_confirmed",
        ]
    finally:
        await agent.stop()


async def test_a_small_removal_goes_through_at_once(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    for n in "abcde":
        ssm.put_parameter(Name=f"/r/{n}", Value=f"value-{n}", Type="String")
    agent = agent_for(ssm_config(moto_url, [{"path": "/r"}], tmp_path))
    try:
        await agent.refresher.cycle()
        ssm.delete_parameters(Names=["/r/a", "/r/b"])  # 2 of 5 = 40%, under the default 50%
        result = await agent.refresher.cycle()
        assert sorted(c.name for c in result.change.removed) == ["/r/a", "/r/b"]
        assert _held(agent) == 0
    finally:
        await agent.stop()


async def test_max_removal_share_1_turns_the_hold_off(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    for n in "abcde":
        ssm.put_parameter(Name=f"/r/{n}", Value=f"value-{n}", Type="String")
    cfg = ssm_config(moto_url, [{"path": "/r"}], tmp_path)
    cfg = cfg.model_copy(
        update={"refresh": cfg.refresh.model_copy(update={"max_removal_share": 1.0})}
    )
    agent = agent_for(cfg)
    try:
        await agent.refresher.cycle()
        ssm.delete_parameters(Names=[f"/r/{n}" for n in "abcd"])
        assert len((await agent.refresher.cycle()).change.removed) == 4
    finally:
        await agent.stop()
