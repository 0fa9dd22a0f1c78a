"""Fleet mode with in-process agents: a real redis-server, moto behind faithful-KMS proxies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from tests.support.agents import agent_for
from tests.support.fault_proxy import FaultProxy
from tests.support.fleet import FLEET_KEY, dump_redis, fleet_config, proxies, seed, ssm_calls
from tests.support.redis import RedisServer
from tests.support.waiting import async_wait_until


def roles(agents: list[Agent]) -> list[str]:
    return [a.fleet.role if a.fleet else "-" for a in agents]


def value(agent: Agent, name: str) -> str | None:
    p = agent.state.snapshot.get(name)
    return None if p is None else p.value


class Fleet3:
    def __init__(self, agents: list[Agent], proxies: list[FaultProxy]) -> None:
        self.agents = agents
        self.proxies = proxies

    def watcher(self) -> int:
        found = [i for i, a in enumerate(self.agents) if a.fleet and a.fleet.role == "watcher"]
        assert len(found) == 1, roles(self.agents)
        return found[0]


@pytest.fixture
async def fleet3(
    ssm: Any, moto_url: str, redis_url: str, tmp_path: Path, kms_key_id: str
) -> AsyncIterator[Fleet3]:
    seed(ssm, kms_key_id)
    with proxies(moto_url, 3) as started:
        agents = [
            agent_for(fleet_config(p.url, redis_url, tmp_path / f"a{i}"), seed=i)
            for i, p in enumerate(started)
        ]
        for a in agents:
            await a.start()
        try:
            await async_wait_until(
                lambda: (
                    all(a.state.ready for a in agents)
                    and sorted(roles(agents)) == ["follower", "follower", "watcher"]
                ),
                timeout=20,
                what="three ready agents: one watcher, two followers",
            )
            yield Fleet3(agents, started)
        finally:
            for a in agents:
                await a.stop()


async def test_one_watcher_and_a_change_reaches_every_agent(fleet3: Fleet3, ssm: Any) -> None:
    for a in fleet3.agents:
        assert value(a, "/app/secret") == "s3cret-one"
    ssm.put_parameter(Name="/app/secret", Value="s3cret-two", Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name="/app/plain", Value="world", Type="String", Overwrite=True)
    # watch_interval (1 s) + 1 s
    await async_wait_until(
        lambda: all(
            value(a, "/app/secret") == "s3cret-two" and value(a, "/app/plain") == "world"
            for a in fleet3.agents
        ),
        timeout=2.0,
        what="the change on all three agents",
    )
    fleet3.watcher()


async def test_followers_make_no_ssm_call_in_steady_state(fleet3: Fleet3) -> None:
    w = fleet3.watcher()
    for p in fleet3.proxies:
        p.reset_calls()
    watcher_proxy = fleet3.proxies[w]
    await asyncio.to_thread(watcher_proxy.wait_for_count, 2, "GetParametersByPath", timeout=10)
    for i, p in enumerate(fleet3.proxies):
        if i != w:
            assert ssm_calls(p) == 0, (i, p.calls())
            assert p.count("Decrypt") == 0


async def test_no_secure_string_plaintext_in_valkey(
    fleet3: Fleet3, ssm: Any, redis_server: RedisServer
) -> None:
    ssm.put_parameter(Name="/app/secret", Value="s3cret-two", Type="SecureString", Overwrite=True)
    await async_wait_until(
        lambda: all(value(a, "/app/secret") == "s3cret-two" for a in fleet3.agents), timeout=5
    )
    everything = b"\n".join(dump_redis(redis_server.port))
    assert b"hello" in everything  # the String is there: the dump is real
    for secret in (b"s3cret-one", b"s3cret-two", FLEET_KEY.encode()):
        assert secret not in everything
