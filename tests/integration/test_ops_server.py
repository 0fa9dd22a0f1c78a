"""http.ops_listen: health and metrics on a second listener that may bind a non-loopback address."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent.app import Agent
from agent.config import ConfigError, parse_config
from tests.support.builders import agent_config
from tests.support.moto import free_port
from tests.support.waiting import async_wait_until


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback test URL)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_ops_listener_serves_health_and_metrics_but_no_values(tmp_path: Path) -> None:
    (tmp_path / "values.toml").write_text('"/app/secret" = "ops-must-not-show-this"\n')
    ops_port, api_port = free_port(), free_port()
    cfg = parse_config(
        agent_config(
            http={
                "listen": f"127.0.0.1:{api_port}",
                "token_file": "token",
                # Any address is accepted here; the test binds loopback to stay on this machine.
                "ops_listen": f"127.0.0.1:{ops_port}",
            },
        ),
        file=str(tmp_path / "config.toml"),
    )
    agent = Agent(cfg)
    await agent.start()
    try:
        await async_wait_until(lambda: agent.state.ready, 10)
        base = f"http://127.0.0.1:{ops_port}"
        assert await _aget(f"{base}/ping") == (200, "healthy")
        status, body = await _aget(f"{base}/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        status, body = await _aget(f"{base}/healthz")
        assert status == 200 and json.loads(body)["parameters"] == 1
        status, body = await _aget(f"{base}/metrics")
        assert status == 200 and "ssm_sidecar_parameters 1.0" in body
        # No value, no API: the parameter routes do not exist on this listener.
        status, body = await _aget(f"{base}/v1/parameters/app/secret")
        assert status == 404 and "ops-must-not-show-this" not in body
        status, _ = await _aget(f"{base}/systemsmanager/parameters/get?name=/app/secret")
        assert status == 404
    finally:
        await agent.stop()


async def _aget(url: str) -> tuple[int, str]:
    import asyncio

    return await asyncio.to_thread(_get, url)


def test_ops_listen_may_bind_any_address_but_listen_may_not() -> None:
    cfg = parse_config({"parameters": [{"path": "/a"}], "http": {"ops_listen": "0.0.0.0:9102"}})
    assert cfg.http.ops_listen == "0.0.0.0:9102"
    with pytest.raises(ConfigError, match=r"http\.ops_listen: 'nope' is not HOST:PORT"):
        parse_config({"parameters": [{"path": "/a"}], "http": {"ops_listen": "nope"}})
