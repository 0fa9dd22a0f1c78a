"""`refresh.list_by = "names"`: after a listing, cycles read the listed names with GetParameters
(chunks of 10, no decryption) instead of GetParametersByPath, re-listing every
`refresh.relist_every` cycles to find new names. Operations counted at the fault proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.app import Agent
from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy

BY_PATH = "GetParametersByPath"
BY_NAME = "GetParameters"


def _seed(ssm: Any, kms_key_id: str, n: int) -> dict[str, str]:
    values = {}
    for i in range(n):
        secure = i % 3 == 0
        name = f"/app/{'deep/' if i % 4 == 0 else ''}p{i:02d}"
        ssm.put_parameter(
            Name=name,
            Value=f"value-{i}",
            Type="SecureString" if secure else "String",
            **({"KeyId": kms_key_id} if secure else {}),
        )
        values[name] = f"value-{i}"
    return values


def _agent(proxy: FaultProxy, tmp_path: Path, **refresh: Any) -> Agent:
    cfg = ssm_config(proxy.url, [{"path": "/app", "recursive": True}], tmp_path)
    cfg = cfg.model_copy(update={"refresh": cfg.refresh.model_copy(update=refresh)})
    return agent_for(cfg)


def _served(agent: Agent) -> dict[str, str]:
    return {p.name: p.value for p in agent.state.snapshot}


async def _cycle(agent: Agent, proxy: FaultProxy) -> tuple[int, int, int]:
    """One cycle: (GetParametersByPath, GetParameters without, with decryption) calls."""
    proxy.reset_calls()
    result = await agent.refresher.cycle()
    assert result.complete and not result.errors
    return (
        proxy.count(BY_PATH),
        proxy.count(BY_NAME, with_decryption=False),
        proxy.count(BY_NAME, with_decryption=True),
    )


async def test_names_cycles_read_by_name_and_relist_every_n(
    ssm: Any, kms_key_id: str, moto_url: str, tmp_path: Path
) -> None:
    values = _seed(ssm, kms_key_id, 25)
    with FaultProxy(moto_url) as proxy:
        agent = _agent(proxy, tmp_path, list_by="names", relist_every=3)
        try:
            first = await _cycle(agent, proxy)
            assert first[0] >= 3 and first[1] == 0  # the first load lists the path
            assert _served(agent) == values
            # Cycles 2 and 3: by name, 3 chunks of 10 without decryption, nothing to decrypt.
            assert await _cycle(agent, proxy) == (0, 3, 0)
            assert await _cycle(agent, proxy) == (0, 3, 0)
            assert _served(agent) == values
            # Cycle 4 lists again, then by name again.
            relist = await _cycle(agent, proxy)
            assert relist[0] >= 3 and relist[1:] == (0, 0)
            assert await _cycle(agent, proxy) == (0, 3, 0)
        finally:
            await agent.source.close()


async def test_names_cycles_see_changes_and_deletions_and_relisting_finds_new_names(
    ssm: Any, kms_key_id: str, moto_url: str, tmp_path: Path
) -> None:
    values = _seed(ssm, kms_key_id, 12)
    with FaultProxy(moto_url) as proxy:
        agent = _agent(proxy, tmp_path, list_by="names", relist_every=3)
        try:
            await _cycle(agent, proxy)
            ssm.put_parameter(
                Name="/app/deep/p00",
                Value="new-secret",
                Type="SecureString",
                Overwrite=True,
                KeyId=kms_key_id,
            )
            ssm.put_parameter(Name="/app/p01", Value="new-plain", Type="String", Overwrite=True)
            ssm.delete_parameter(Name="/app/p02")
            ssm.put_parameter(Name="/app/p99", Value="brand-new", Type="String")
            # By name: the overwrite (one decryption call) and the deletion are seen, the new
            # name is not listed yet.
            assert await _cycle(agent, proxy) == (0, 2, 1)
            served = _served(agent)
            assert served["/app/deep/p00"] == "new-secret"
            assert served["/app/p01"] == "new-plain"
            assert "/app/p02" not in served and "/app/p99" not in served
            # The deleted name is no longer asked for.
            await _cycle(agent, proxy)
            asked = [n for c in proxy.calls() if c.operation == BY_NAME for n in c.body["Names"]]
            assert "/app/p02" not in asked and len(asked) == 11
            # The re-listing finds the new name.
            relist = await _cycle(agent, proxy)
            assert relist[0] >= 2
            served = _served(agent)
            expected = {**values, "/app/deep/p00": "new-secret", "/app/p01": "new-plain"}
            del expected["/app/p02"]
            expected["/app/p99"] = "brand-new"
            assert served == expected
        finally:
            await agent.source.close()


async def test_default_lists_the_path_every_cycle(
    ssm: Any, kms_key_id: str, moto_url: str, tmp_path: Path
) -> None:
    _seed(ssm, kms_key_id, 12)
    with FaultProxy(moto_url) as proxy:
        agent = _agent(proxy, tmp_path)
        try:
            for _ in range(3):
                calls = await _cycle(agent, proxy)
                assert calls[0] >= 2 and calls[1] == 0
        finally:
            await agent.source.close()


async def test_a_denied_by_name_read_lists_the_path_in_the_same_cycle(
    ssm: Any, kms_key_id: str, moto_url: str, tmp_path: Path
) -> None:
    values = _seed(ssm, kms_key_id, 12)
    with FaultProxy(moto_url) as proxy:
        agent = _agent(proxy, tmp_path, list_by="names", relist_every=5)
        try:
            await _cycle(agent, proxy)
            ssm.put_parameter(Name="/app/p01", Value="new-plain", Type="String", Overwrite=True)
            # No SecureString changed, so every GetParameters of this cycle is a by-name read.
            proxy.add_fault(BY_NAME, "error", code="AccessDeniedException")
            by_path, _, _ = await _cycle(agent, proxy)
            assert by_path >= 2  # fell back to listing
            assert _served(agent) == {**values, "/app/p01": "new-plain"}
        finally:
            await agent.source.close()
