"""An in-process HttpServer over an in-memory state (a context manager), and raw loopback
connections to it: for the connection-limit tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import HttpConfig
from agent.metrics import Metrics
from agent.outputs.http.server import HttpServer
from agent.results import CycleResult
from agent.snapshot import Change, Parameter, Snapshot
from agent.state import AgentState
from tests.support.http_api import TOKEN_HEADER
from tests.support.moto import free_port

VALUE = Parameter("/app/a", "app/a", "String", "value-a", 3, datetime(2026, 1, 1, tzinfo=UTC))
SLOW_POST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n"
    b"Content-Length: 100\r\n\r\n{"
)


async def _refresh() -> CycleResult:
    return CycleResult(True, True, Change())


async def _no_on_demand(name: str) -> Parameter | None:
    return None


@contextlib.asynccontextmanager
async def api(tmp_path: Path, **http: Any) -> AsyncIterator[tuple[HttpServer, str, Metrics]]:
    # The SDK protocol on (POST / is where bodies are read), for this process's uid.
    http = {"aws_protocols": ("ssm",), "allowed_uids": (os.getuid(),), **http}
    cfg = HttpConfig(listen=f"127.0.0.1:{free_port()}", token_file=tmp_path / "token", **http)
    state = AgentState()
    state.snapshot = Snapshot.build({VALUE.name: VALUE}, 1)
    state.ready = True
    metrics = Metrics()
    server = HttpServer(
        cfg, state, metrics, refresh=_refresh, on_demand=_no_on_demand, interval=30.0
    )
    await server.start()
    try:
        yield server, cfg.listen, metrics
    finally:
        await server.stop()


async def token_read(listen: str, tmp_path: Path, **headers: str) -> tuple[int, bytes]:
    """One read on a new connection."""
    token = (tmp_path / "token").read_text()
    connector = aiohttp.TCPConnector(force_close=True)
    url = f"http://{listen}/v1/parameters/app/a"
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.get(url, headers={TOKEN_HEADER: token, **headers}) as resp,
    ):
        return resp.status, await resp.read()


async def raw(listen: str, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before closing; fails if it is still open after `within`."""
    return await asyncio.wait_for(reader.read(), within)
