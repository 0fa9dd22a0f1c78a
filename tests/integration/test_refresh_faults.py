"""Faults between the agent and SSM: the last good values stay, the agent backs off and recovers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.support.agents import agent_for, served, ssm_config
from tests.support.fault_proxy import FaultProxy
from tests.support.waiting import async_wait_until


async def test_throttled_for_10s_keeps_values_backs_off_and_recovers(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/t/a", Value="before", Type="String")
    cfg = ssm_config(
        fault_proxy.url, [{"path": "/t"}], tmp_path, interval="250ms", max_backoff="2s"
    )
    agent = agent_for(cfg)
    await agent.start()
    try:
        await async_wait_until(lambda: agent.state.ready, 10)
        # Normal polling for a while: the rate to compare against.
        fault_proxy.reset_calls()
        t0 = time.monotonic()
        await async_wait_until(lambda: fault_proxy.count() >= 8, 10)
        normal_rate = fault_proxy.count() / (time.monotonic() - t0)

        fault_proxy.add_fault(None, "throttle")
        ssm.put_parameter(Name="/t/a", Value="after", Type="String", Overwrite=True)
        fault_proxy.reset_calls()
        throttled_at = time.monotonic()
        while time.monotonic() - throttled_at < 10:
            assert served(agent, "/t/a") == "before"  # the last good value is served throughout
            await asyncio.sleep(0.05)  # sampling what is served, not waiting for an event
        calls = fault_proxy.calls()
        assert calls and all(c.faulted for c in calls)
        late = [c for c in calls if c.at - throttled_at > 5]
        late_rate = len(late) / 5
        print(f"calls/s: normal {normal_rate:.2f}, throttled last 5 s {late_rate:.2f}")
        assert late_rate < normal_rate / 2, (late_rate, normal_rate)
        assert agent.state.consecutive_failures >= 3
        assert agent.metrics.source_throttled._value.get() >= len(calls)

        fault_proxy.clear_faults()
        # Recovers alone within one backoff ceiling plus a cycle.
        await async_wait_until(lambda: served(agent, "/t/a") == "after", 2 + 1)
        assert agent.state.consecutive_failures == 0
    finally:
        await agent.stop()


async def test_access_denied_on_one_name_leaves_the_others_updating(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for n in ("a", "b", "c"):
        ssm.put_parameter(Name=f"/d/{n}", Value=f"{n}1", Type="String")
    entries: list[dict[str, Any]] = [{"name": f"/d/{n}"} for n in ("a", "b", "c")]
    agent = agent_for(ssm_config(fault_proxy.url, entries, tmp_path))
    assert (await agent.refresher.cycle()).complete

    fault_proxy.add_fault(
        "GetParameters",
        "error",
        code="AccessDeniedException",
        message="not authorized to perform ssm:GetParameters",
        match="/d/b",
    )
    for n in ("a", "b", "c"):
        ssm.put_parameter(Name=f"/d/{n}", Value=f"{n}2", Type="String", Overwrite=True)
    result = await agent.refresher.cycle()
    assert result.ok and result.complete  # /d/b keeps its last good value
    assert [(e.subject, e.code) for e in result.errors] == [("/d/b", "AccessDeniedException")]
    assert (served(agent, "/d/a"), served(agent, "/d/b"), served(agent, "/d/c")) == (
        "a2",
        "b1",
        "c2",
    )
    await agent.source.close()


async def test_kms_denied_on_one_secure_string_keeps_its_last_good_value(
    ssm: Any, kms_key_id: str, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for n in ("s1", "s2"):
        ssm.put_parameter(Name=f"/k/{n}", Value=f"{n}-v1", Type="SecureString", KeyId=kms_key_id)
    agent = agent_for(ssm_config(fault_proxy.url, [{"path": "/k"}], tmp_path))
    assert (await agent.refresher.cycle()).complete

    fault_proxy.add_fault(
        "GetParameters",
        "error",
        code="AccessDeniedException",
        message="KMS: not authorized to kms:Decrypt",
        match="/k/s2",
    )
    fault_proxy.add_fault(
        "GetParameter",
        "error",
        code="AccessDeniedException",
        message="KMS: not authorized to kms:Decrypt",
        match="/k/s2",
    )
    for n in ("s1", "s2"):
        ssm.put_parameter(
            Name=f"/k/{n}", Value=f"{n}-v2", Type="SecureString", KeyId=kms_key_id, Overwrite=True
        )
    result = await agent.refresher.cycle()
    assert [(e.subject, e.code) for e in result.errors] == [("/k/s2", "AccessDeniedException")]
    assert (served(agent, "/k/s1"), served(agent, "/k/s2")) == ("s1-v2", "s2-v1")
    assert agent.metrics.decrypt_failures._value.get() == 1
    await agent.source.close()


async def test_server_errors_and_resets_keep_the_snapshot(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/e/a", Value="kept", Type="String")
    agent = agent_for(ssm_config(fault_proxy.url, [{"path": "/e"}], tmp_path))
    assert (await agent.refresher.cycle()).complete
    before = agent.state.snapshot
    for kind, extra in (("status", {"status": 503}), ("reset", {})):
        fault_proxy.clear_faults()
        fault_proxy.add_fault(None, kind, **extra)  # type: ignore[arg-type]
        result = await agent.refresher.cycle()
        assert not result.ok and result.reason
        assert agent.state.snapshot is before
        assert agent.state.last_error == result.reason
    await agent.source.close()


async def test_a_pinned_name_that_fails_keeps_its_last_good_value(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for v in ("v1", "v2"):
        ssm.put_parameter(Name="/p/db", Value=v, Type="String", Overwrite=True)
    ssm.put_parameter(Name="/p/other", Value="o1", Type="String")
    entries: list[dict[str, Any]] = [{"name": "/p/db", "version": 1}, {"name": "/p/other"}]
    agent = agent_for(ssm_config(fault_proxy.url, entries, tmp_path))
    assert (await agent.refresher.cycle()).complete

    fault_proxy.add_fault(
        "GetParameters", "error", code="AccessDeniedException", message="denied", match="/p/db:1"
    )
    result = await agent.refresher.cycle()
    assert [(e.subject, e.name) for e in result.errors] == [("/p/db:1", "/p/db")]
    assert result.complete and served(agent, "/p/db") == "v1"  # the last good value stays
    await agent.source.close()
