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


def sample(agent: Agent, name: str, **labels: str) -> float:
    return agent.metrics.registry.get_sample_value("ssm_sidecar_" + name, labels) or 0.0


def _redis(redis_server: RedisServer) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)


def _keys(client: Any) -> tuple[str, str]:
    stream = next(k for k in client.scan_iter() if k.endswith(":stream"))
    return stream, stream[: -len("stream")] + "state"


def _last_id(client: Any, stream: str) -> str:
    return str(client.xrevrange(stream, "+", "-", count=1)[0][0])


async def test_forged_altered_and_replayed_records_are_refused_and_counted(
    fleet3: Fleet3, ssm: Any, redis_server: RedisServer
) -> None:
    import json

    from agent.fleet.records import Record, Signer

    client = _redis(redis_server)
    stream, state = _keys(client)
    old_wire = client.hget(state, "/app/plain")  # version 1, genuinely signed
    ssm.put_parameter(Name="/app/plain", Value="v2", Type="String", Overwrite=True)
    await async_wait_until(lambda: all(value(a, "/app/plain") == "v2" for a in fleet3.agents))
    followers = [a for a in fleet3.agents if a.fleet and a.fleet.role == "follower"]
    scope = followers[0].fleet.scope if followers[0].fleet else ""

    forged = Signer("not-the-fleet-key-at-all", scope).sign(
        Record("/app/plain", "plain", "String", "forged", 99, 4e9)
    )
    genuine = json.loads(client.hget(state, "/app/plain"))
    genuine["r"]["value"], genuine["r"]["version"] = "altered", 99
    altered = json.dumps(genuine)
    for wire in (forged, altered, old_wire):
        client.xadd(stream, {"prev": _last_id(client, stream), "rec": wire})

    await async_wait_until(
        lambda: all(
            sample(a, "fleet_records_refused_total", reason="signature") == 2
            and sample(a, "fleet_records_refused_total", reason="stale") == 1
            for a in followers
        ),
        timeout=5,
        what="two bad signatures and one replay refused by each follower",
    )
    for a in fleet3.agents:
        assert value(a, "/app/plain") == "v2"
    # ... and the records that follow still flow.
    ssm.put_parameter(Name="/app/plain", Value="v3", Type="String", Overwrite=True)
    await async_wait_until(lambda: all(value(a, "/app/plain") == "v3" for a in fleet3.agents))
    client.close()


async def test_a_gap_in_the_stream_is_resynced_from_the_state(
    fleet3: Fleet3, ssm: Any, redis_server: RedisServer
) -> None:
    client = _redis(redis_server)
    stream, _state = _keys(client)
    client.delete(stream)  # every entry gone (as a trim past a follower's last id would)
    ssm.put_parameter(Name="/app/plain", Value="after-gap", Type="String", Overwrite=True)
    await async_wait_until(
        lambda: all(value(a, "/app/plain") == "after-gap" for a in fleet3.agents), timeout=5
    )
    followers = [a for a in fleet3.agents if a.fleet and a.fleet.role == "follower"]
    assert all(sample(a, "fleet_resyncs_total", reason="gap") >= 1 for a in followers)
    client.close()


async def test_valkey_down_every_agent_polls_and_serves_then_rejoins(
    ssm: Any, moto_url: str, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    seed(ssm)
    with proxies(moto_url, 3) as started:
        agents = [
            agent_for(fleet_config(p.url, redis_url, tmp_path / f"a{i}", interval="1s"), seed=i)
            for i, p in enumerate(started)
        ]
        for a in agents:
            await a.start()
        try:
            await async_wait_until(
                lambda: sorted(roles(agents)) == ["follower", "follower", "watcher"], timeout=20
            )
            redis_server.stop()
            # The role can turn before the next Valkey call fails and clears fleet_connected.
            await async_wait_until(
                lambda: (
                    roles(agents) == ["polling"] * 3
                    and all(sample(a, "fleet_connected") == 0 for a in agents)
                ),
                timeout=15,
                what="all polling, none connected",
            )
            ssm.put_parameter(Name="/app/plain", Value="polled", Type="String", Overwrite=True)
            await async_wait_until(
                lambda: all(value(a, "/app/plain") == "polled" for a in agents),
                timeout=5,
                what="the change by polling",
            )
            for a in agents:
                assert value(a, "/app/secret") == "s3cret-one"
                assert a.state.health().fleet is not None
            redis_server.start()
            await async_wait_until(
                lambda: sorted(roles(agents)) == ["follower", "follower", "watcher"],
                timeout=30,
                what="the fleet back together",
            )
            ssm.put_parameter(Name="/app/plain", Value="rejoined", Type="String", Overwrite=True)
            await async_wait_until(
                lambda: all(value(a, "/app/plain") == "rejoined" for a in agents), timeout=5
            )
        finally:
            for a in agents:
                await a.stop()


async def test_kms_denied_follower_fetches_the_name_from_ssm(
    ssm: Any, moto_url: str, redis_url: str, tmp_path: Path
) -> None:
    seed(ssm)  # the aws/ssm key: like AWS, deny direct decryption to the followers
    with proxies(moto_url, 2) as (first, second):
        watcher = agent_for(fleet_config(first.url, redis_url, tmp_path / "w"), seed=1)
        await watcher.start()
        await async_wait_until(
            lambda: watcher.fleet is not None and watcher.fleet.role == "watcher"
        )
        second.add_fault("Decrypt", "error", code="AccessDeniedException", status=400)
        follower = agent_for(fleet_config(second.url, redis_url, tmp_path / "f"), seed=2)
        await follower.start()
        try:
            await async_wait_until(lambda: follower.state.ready, timeout=15)
            assert follower.fleet is not None and follower.fleet.role == "follower"
            assert value(follower, "/app/secret") == "s3cret-one"
            second.reset_calls()
            ssm.put_parameter(
                Name="/app/secret", Value="s3cret-two", Type="SecureString", Overwrite=True
            )
            await async_wait_until(
                lambda: value(follower, "/app/secret") == "s3cret-two", timeout=10
            )
            assert second.count("Decrypt") >= 0  # denied earlier: KMS is skipped for a while
            assert second.count("GetParameters", with_decryption=True) == 1
            assert second.count("GetParametersByPath") == 0
            assert sample(follower, "fleet_fallback_fetches_total") >= 2
        finally:
            await follower.stop()
            await watcher.stop()


async def test_an_agent_without_the_key_polls_alone_and_says_so(
    ssm: Any, moto_url: str, redis_url: str, tmp_path: Path
) -> None:
    from agent.outputs.http.routes.ops import health_body

    seed(ssm)
    with proxies(moto_url, 1) as (proxy,):
        proxy.add_fault("GetParameters", "error", code="AccessDeniedException", match="/fleet/key")
        agent = agent_for(fleet_config(proxy.url, redis_url, tmp_path / "a"))
        await agent.start()
        try:
            await async_wait_until(lambda: agent.state.ready, timeout=15)
            assert agent.fleet is not None and agent.fleet.role == "alone"
            assert sample(agent, "fleet_role", role="alone") == 1
            fleet = health_body(agent.state.health(), 2, 0.0)["fleet"]
            assert isinstance(fleet, dict) and fleet["role"] == "alone"
            assert "AccessDeniedException" in str(fleet["reason"])
            assert value(agent, "/app/secret") == "s3cret-one"
        finally:
            await agent.stop()
