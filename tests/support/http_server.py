"""A real HttpServer over an in-memory AgentState (no SSM), with scripted refresh and on-demand.

For the unit tests of the HTTP output: the route families, the guard, the lookup rules. The
`api` fixture (tests/unit/conftest.py) is one such server holding `STANDARD`, and a client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import HttpConfig
from agent.metrics import Metrics
from agent.outputs.http.context import HttpContext, Route
from agent.outputs.http.server import HttpServer
from agent.results import CycleResult
from agent.snapshot import Change, Parameter, Snapshot
from agent.state import AgentState
from tests.support.builders import parameter, snapshot
from tests.support.http_api import ApiClient
from tests.support.moto import free_port

SECRET = "hunter2-plaintext"
CIPHER = "AQICAHENCRYPTEDBLOB=="
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

#: What the server holds unless a test says otherwise.
STANDARD = (
    parameter("/app/db/url", "postgres://db/app", version=3),
    parameter("/app/db/password", SECRET, version=7, type="SecureString", encrypted=CIPHER),
    parameter("/app/name", 'it\'s a \\ "quoted"\nvalue $HOME'),
    parameter("/pinned", "old", version=2, selector=":2"),
    parameter("/labelled", "stable-value", version=5, selector=":stable"),
)


@dataclass
class Fakes:
    """What the Agent would pass the server: refresh and on-demand, scripted."""

    on_demand: dict[str, Parameter | Exception | None] = field(default_factory=dict)
    on_demand_calls: list[str] = field(default_factory=list)
    on_demand_gate: asyncio.Event | None = None
    refresh_result: CycleResult = field(default_factory=lambda: CycleResult(True, True, Change()))
    refresh_calls: int = 0
    refresh_gate: asyncio.Event | None = None

    async def fetch(self, name: str) -> Parameter | None:
        self.on_demand_calls.append(name)
        if self.on_demand_gate is not None:
            await self.on_demand_gate.wait()
        found = self.on_demand.get(name)
        if isinstance(found, Exception):
            raise found
        return found

    async def refresh(self) -> CycleResult:
        self.refresh_calls += 1
        if self.refresh_gate is not None:
            await self.refresh_gate.wait()
        return self.refresh_result


@dataclass
class Api:
    client: ApiClient
    server: HttpServer
    state: AgentState
    fakes: Fakes
    metrics: Metrics
    token_file: Path


async def start_api(
    tmp_path: Path,
    *,
    ready: bool = True,
    max_concurrency: int = 256,
    interval: float = 30.0,
    route_factories: Iterable[Callable[[HttpContext], Iterable[Route]]] = (),
    served: Snapshot | None = None,
    listen: str | None = None,
) -> tuple[HttpServer, AgentState, Fakes, Metrics, HttpConfig]:
    """A started server on `listen` (a free loopback port by default) serving `served`
    (`STANDARD` by default); names under /dyn are fetched on demand from the fakes."""
    cfg = HttpConfig(
        listen=listen or f"127.0.0.1:{free_port()}",
        token_file=tmp_path / "run" / "token",
        on_demand_prefixes=("/dyn",),
        max_concurrency=max_concurrency,
    )
    state = AgentState()
    state.snapshot = served if served is not None else snapshot(*STANDARD)
    state.ready = ready
    fakes = Fakes()
    metrics = Metrics()
    server = HttpServer(
        cfg,
        state,
        metrics,
        refresh=fakes.refresh,
        on_demand=fakes.fetch,
        interval=interval,
        route_factories=tuple(route_factories),
    )
    await server.start()
    return server, state, fakes, metrics, cfg


@asynccontextmanager
async def api_for(tmp_path: Path, **options: Any) -> AsyncIterator[Api]:
    """start_api(tmp_path, **options) with a client holding the token; stopped on exit."""
    server, state, fakes, metrics, cfg = await start_api(tmp_path, **options)
    try:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", cfg.token_file.read_text(), session)
            yield Api(client, server, state, fakes, metrics, cfg.token_file)
    finally:
        await server.stop()


def error_of(reply: Any) -> tuple[int, str, str]:
    """(status, __type, message) of a JSON error reply, checking its shape on the way."""
    body = reply.json()
    assert set(body) == {"__type", "message"}, body
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.status, body["__type"], body["message"]
