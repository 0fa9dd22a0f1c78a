"""connections.py against an in-process HttpServer over loopback: the connection cap and its
eviction order, the header/body/idle timeouts, the body read before the concurrency slot, the
long-poll cap, and the open-file limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from agent.config import HttpConfig
from agent.metrics import Metrics
from agent.outputs.http import connections
from agent.outputs.http.connections import ACTIVE, IDLE, ConnectionLimiter, Tracked
from tests.support.conn_server import SLOW_POST, api, closed_by_server, raw, token_read
from tests.support.http_api import TOKEN_HEADER, metric_value
from tests.support.moto import free_port
from tests.support.waiting import async_wait_until


def dropped(metrics: Metrics, reason: str) -> float:
    text = metrics_text(metrics)
    return metric_value(
        text, "ssm_sidecar_http_connections_dropped_total", listener="api", reason=reason
    )


def metrics_text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


async def test_idle_connections_give_way_to_a_client_with_a_request(tmp_path: Path) -> None:
    async with api(tmp_path, max_connections=8) as (server, listen, metrics):
        idle = [await raw(listen) for _ in range(40)]
        try:
            # 8 kept, up to 16 in a burst: never more, whatever the attacker opens.
            await async_wait_until(lambda: server.open_connections <= 16, 5, what="capped")
            for _ in range(5):
                assert await token_read(listen, tmp_path) == (200, b"value-a")
            assert dropped(metrics, "evicted") >= 40 - 16
            assert dropped(metrics, "over_limit") == 0
            await async_wait_until(
                lambda: server.open_connections <= 8, 5, what="trimmed to max_connections"
            )
        finally:
            for _, writer in idle:
                writer.close()


async def test_a_busy_server_refuses_new_connections_with_503(tmp_path: Path) -> None:
    async with api(tmp_path, max_connections=8, max_concurrency=64, max_long_polls=32) as (
        server,
        listen,
        metrics,
    ):
        token = (tmp_path / "token").read_text()
        poll = (
            b"GET /v1/parameters/app/a?wait=30s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f'{TOKEN_HEADER}: {token}\r\nIf-None-Match: "3"\r\n\r\n'.encode()
        )
        polls = [await raw(listen, poll) for _ in range(16)]
        try:
            await async_wait_until(
                lambda: server.ctx.long_polls.waiting == 16, 5, what="16 long-polls waiting"
            )
            reader, writer = await raw(listen)
            answer = await closed_by_server(reader, 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["__type"] == "ServiceUnavailable"
            assert dropped(metrics, "over_limit") == 1
        finally:
            for _, w in polls:
                w.close()
            # Let the long-polls end before the loop does: cancelling many waiters of
            # AgentState's Condition at loop teardown can deadlock (asyncio.Condition, 3.11).
            await async_wait_until(lambda: server.ctx.long_polls.waiting == 0, 5, what="ended")
            await asyncio.sleep(0.2)


async def test_slow_headers_are_cut_after_header_timeout(tmp_path: Path) -> None:
    async with api(tmp_path, header_timeout="0.2s") as (_, listen, metrics):
        reader, writer = await raw(listen, b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert await closed_by_server(reader, 5) == b""
        writer.close()
        assert dropped(metrics, "header_timeout") == 1


async def test_idle_connections_are_closed_after_idle_timeout(tmp_path: Path) -> None:
    async with api(tmp_path, idle_timeout="0.3s") as (_, listen, _metrics):
        reader, writer = await raw(listen, b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await closed_by_server(reader, 5)  # answered, then kept until idle
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"healthy")


async def test_a_slow_body_gets_408_and_never_holds_a_slot(tmp_path: Path) -> None:
    async with api(tmp_path, max_concurrency=1, body_timeout="0.5s") as (server, listen, _):
        slow = [await raw(listen, SLOW_POST) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert server.in_flight == 0
        assert await token_read(listen, tmp_path) == (200, b"value-a")
        for reader, writer in slow:
            answer = await closed_by_server(reader, 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"RequestTimeout" in answer and b"http.body_timeout" in answer


async def test_a_body_over_max_body_bytes_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with api(tmp_path, max_body_bytes=2048) as (_, listen, _metrics):
        reader, writer = await raw(
            listen,
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n{",
        )
        answer = await asyncio.wait_for(reader.read(2048), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 ") and b"RequestTooLarge" in answer


async def test_long_polls_beyond_max_long_polls_get_429(tmp_path: Path) -> None:
    async with api(tmp_path, max_long_polls=1) as (server, listen, _):
        headers = {"If-None-Match": '"3"'}
        token = (tmp_path / "token").read_text()
        async with aiohttp.ClientSession() as s:
            url = f"http://{listen}/v1/parameters/app/a"
            first = asyncio.create_task(
                s.get(url, params={"wait": "30s"}, headers={TOKEN_HEADER: token, **headers})
            )
            await async_wait_until(lambda: server.ctx.long_polls.waiting == 1, 5, what="waiting")
            async with s.get(
                url, params={"wait": "30s"}, headers={TOKEN_HEADER: token, **headers}
            ) as resp:
                assert resp.status == 429
                body = await resp.json()
                assert body["__type"] == "TooManyRequestsException"
                assert "http.max_long_polls" in body["message"]
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first
            await async_wait_until(lambda: server.ctx.long_polls.waiting == 0, 5, what="ended")
            await asyncio.sleep(0.2)


# -- the eviction order, on the limiter alone


class _Transport:
    """Enough of a transport for the limiter: a real socket (so FIONREAD works) and abort()."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def abort(self) -> None:
        self.aborted = True


@pytest.fixture
def socket_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    pairs: list[tuple[socket.socket, socket.socket]] = []
    yield pairs
    for a, b in pairs:
        a.close()
        b.close()


def _limiter() -> ConnectionLimiter:
    counter = Counter("dropped", "d", ["listener", "reason"], registry=CollectorRegistry())
    limiter = ConnectionLimiter(
        asyncio.Protocol,
        listener="t",
        max_connections=4,
        ceiling=4,
        header_timeout=10.0,
        dropped=counter,
    )
    return limiter


def _conn(
    limiter: ConnectionLimiter,
    pairs: list[tuple[socket.socket, socket.socket]],
    *,
    age: float,
    pending: bool = False,
    proven: bool = False,
    phase: int = IDLE,
) -> Tracked:
    tracked = limiter()
    assert isinstance(tracked, Tracked)
    ours, theirs = socket.socketpair()
    pairs.append((ours, theirs))
    if pending:
        theirs.send(b"GET / HTTP/1.1\r\n")
    tracked.transport = _Transport(ours)  # type: ignore[assignment]
    if proven:
        limiter.end(tracked)
    tracked.phase = phase
    tracked.since -= age
    return tracked


async def test_eviction_order(socket_pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    limiter = _limiter()
    used_lately = _conn(limiter, socket_pairs, age=1.0, proven=True)
    idle_keepalive = _conn(limiter, socket_pairs, age=5.0, proven=True)
    request_waiting = _conn(limiter, socket_pairs, age=0.0, pending=True)
    answering = _conn(limiter, socket_pairs, age=9.0, phase=ACTIVE)
    assert limiter.open == limiter.ceiling == 4

    def evicts() -> Tracked:
        (victim,) = [c for c in limiter._fresh.values() if c.closing] + [
            c for c in limiter._proven.values() if c.closing
        ]
        limiter.lost(victim)
        return victim

    # Nothing fresh can go: the keep-alive connection idle for more than 2 s does.
    newcomer = _conn(limiter, socket_pairs, age=0.0)
    assert evicts() is idle_keepalive
    # A fresh connection with nothing to read goes before any keep-alive connection...
    stale = _conn(limiter, socket_pairs, age=0.0, pending=True)
    assert evicts() is newcomer
    # ... and a fresh one that has not moved for 250 ms (even with bytes waiting) before that.
    stale.since -= 1.0
    _conn(limiter, socket_pairs, age=0.0, pending=True)
    assert evicts() is stale
    # Left: requests waiting in their buffers, an answer in progress, a keep-alive connection
    # used within 2 s. All stay; the newcomer is refused (503).
    assert not isinstance(limiter(), Tracked)
    assert not any(c.closing for c in (used_lately, request_waiting, answering))


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit() -> None:
    code = "from agent.outputs.http.connections import raise_open_file_limit as r; print(*r())"
    out = subprocess.run(
        ["prlimit", "--nofile=300:2000", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    assert out == ["300", "2000", "2000"]


def test_the_cap_is_lowered_to_what_the_descriptor_limit_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (600, 600))
    limiter = connections.limited_connections("api", HttpConfig(), Metrics(), 512)
    assert limiter.ceiling == 600 - connections.DESCRIPTOR_RESERVE - 2 * 64
    assert limiter.max_connections == limiter.ceiling * 3 // 4
    monkeypatch.setattr(resource, "getrlimit", lambda _: (65536, 65536))
    limiter = connections.limited_connections("api", HttpConfig(), Metrics(), 512)
    assert (limiter.max_connections, limiter.ceiling) == (512, 1024)


def test_the_systemd_unit_leaves_room_for_the_default_connections() -> None:
    unit = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "ssm-sidecar@.service"
    (line,) = [x for x in unit.read_text().splitlines() if x.startswith("LimitNOFILE=")]
    wanted = HttpConfig().max_connections
    reserve = connections.DESCRIPTOR_RESERVE + 2 * connections.OPS_MAX_CONNECTIONS
    assert int(line.partition("=")[2]) >= 2 * wanted + reserve


async def _ping_twice(listen: str, pause: float) -> list[bytes]:
    """Two requests on one kept-alive connection, `pause` apart."""
    reader, writer = await raw(listen)
    answers = []
    try:
        for i in range(2):
            if i:
                await asyncio.sleep(pause)
            writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.readuntil(b"healthy"), 5))
    finally:
        writer.close()
    return answers


async def test_a_kept_alive_connection_outlives_the_header_timeout(tmp_path: Path) -> None:
    async with api(tmp_path, header_timeout="0.2s") as (_, listen, metrics):
        answers = await _ping_twice(listen, 1.5)
        assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
        assert dropped(metrics, "header_timeout") == 0


async def test_the_ops_listener_is_capped_and_timed_the_same_way(tmp_path: Path) -> None:
    from agent.outputs.http import OpsServer
    from agent.state import AgentState

    metrics = Metrics()
    listen = f"127.0.0.1:{free_port()}"
    ops = OpsServer(listen, AgentState(), metrics, HttpConfig(header_timeout="0.2s"))
    await ops.start()
    try:
        answers = await _ping_twice(listen, 1.5)
        assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
        reader, writer = await raw(listen, b"GET /ping HTTP/1.1\r\n")
        assert await closed_by_server(reader, 5) == b""
        writer.close()
        text = metrics_text(metrics)
        name = "ssm_sidecar_http_connections_dropped_total"
        assert metric_value(text, name, listener="ops", reason="header_timeout") == 1
    finally:
        await ops.stop()
