"""Talk to the agent's HTTP API from tests: a small client that knows the token header."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from agent.app import Agent
from agent.config import Config
from tests.support.agents import agent_for
from tests.support.moto import free_port
from tests.support.waiting import async_wait_until

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
_DEFAULT = object()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    """Requests to one agent; the right token is sent unless `token=` says otherwise."""

    def __init__(self, base: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: Any = _DEFAULT,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        presented = self.token if token is _DEFAULT else token
        if presented is not None:
            sent[TOKEN_HEADER] = presented
        async with self.session.request(
            method, self.base + path, headers=sent, params=params
        ) as resp:
            return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", path, **kwargs)

    async def compat(self, name: str, **params: str) -> Reply:
        return await self.get("/systemsmanager/parameters/get", params={"name": name, **params})


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0.0 when the sample is absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def http_section(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """An [http] table on a free loopback port with the token file in tmp_path."""
    return {
        "enabled": True,
        "listen": f"127.0.0.1:{free_port()}",
        "token_file": str(tmp_path / "run" / "token"),
        **extra,
    }


def sdk_http_section(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """`http_section` with the AWS SDK protocol on, answered to this test process's uid."""
    return http_section(tmp_path, aws_protocols=["ssm"], allowed_uids=[os.getuid()], **extra)


@asynccontextmanager
async def serving(
    cfg: Config, *, wait_ready: bool = True
) -> AsyncIterator[tuple[Agent, ApiClient]]:
    """An in-process agent with its HTTP API started, and a client for it."""
    agent = agent_for(cfg)
    await agent.start()
    try:
        listen = cfg.http.listen
        connector: aiohttp.BaseConnector | None = None
        base = f"http://{listen}"
        if listen.startswith("unix:"):
            connector = aiohttp.UnixConnector(path=listen[5:])
            base = "http://localhost"
        async with aiohttp.ClientSession(connector=connector) as session:
            client = ApiClient(base, cfg.http.token_file.read_text(), session)
            if wait_ready:
                await async_wait_until(lambda: agent.state.ready, 15, what="agent ready")
            yield agent, client
    finally:
        await agent.stop()
