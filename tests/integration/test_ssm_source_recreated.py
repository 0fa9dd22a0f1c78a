"""A SecureString deleted and created again starts at version 1 again: still a change (moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy

NAME = "/rc/db/password"


def _served(agent: Any) -> str:
    p = agent.state.snapshot.get(NAME)
    assert p is not None
    return str(p.value)


async def test_recreated_with_a_new_value_at_version_1_serves_the_new_value(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name=NAME, Value="first-value", Type="SecureString")
    agent = agent_for(ssm_config(fault_proxy.url, [{"path": "/rc"}], tmp_path))
    try:
        assert (await agent.refresher.cycle()).complete
        assert _served(agent) == "first-value"
        ssm.delete_parameter(Name=NAME)
        ssm.put_parameter(Name=NAME, Value="second-value", Type="SecureString")
        assert ssm.get_parameter(Name=NAME)["Parameter"]["Version"] == 1
        result = await agent.refresher.cycle()
        assert [(c.name, c.old_version, c.new_version) for c in result.change.updated] == [
            (NAME, 1, 1)
        ]
        assert _served(agent) == "second-value"
    finally:
        await agent.stop()


async def test_recreated_with_the_same_value_is_a_change_and_quiet_cycles_stay_free(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name=NAME, Value="same-value", Type="SecureString")
    agent = agent_for(ssm_config(fault_proxy.url, [{"path": "/rc"}], tmp_path))
    try:
        await agent.refresher.cycle()
        fault_proxy.reset_calls()
        for _ in range(2):
            assert not (await agent.refresher.cycle()).change
        assert fault_proxy.count(with_decryption=True) == 0, "a quiet cycle decrypts nothing"

        ssm.delete_parameter(Name=NAME)
        ssm.put_parameter(Name=NAME, Value="same-value", Type="SecureString")
        result = await agent.refresher.cycle()
        assert [c.name for c in result.change.updated] == [NAME]
        assert fault_proxy.count(with_decryption=True) == 1
        fault_proxy.reset_calls()
        assert not (await agent.refresher.cycle()).change
        assert fault_proxy.count(with_decryption=True) == 0
    finally:
        await agent.stop()
