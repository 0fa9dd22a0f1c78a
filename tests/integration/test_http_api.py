"""The HTTP API of an agent polling moto: every error path, long-polls, refresh, unix sockets."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents import ssm_config
from tests.support.http_api import (
    Reply,
    http_section,
    serving,
)

INTERVAL = 0.5


def error(reply: Reply) -> tuple[int, str]:
    body = reply.json()
    assert set(body) == {"__type", "message"}
    return reply.status, body["__type"]


async def test_every_error_path(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/err/a", Value="err-value-1", Type="SecureString")
    http = http_section(tmp_path, max_concurrency=1)
    cfg = ssm_config(moto_url, [{"path": "/err"}], tmp_path, interval="1h", http=http)
    async with serving(cfg) as (_, client):
        value_path = "/v1/parameters/err/a"
        assert (await client.get(value_path)).text == "err-value-1"
        assert error(await client.get(value_path, token=None)) == (401, "MissingTokenException")
        assert error(await client.get(value_path, token="guess")) == (403, "AccessDeniedException")
        forwarded = await client.get(value_path, headers={"X-Forwarded-For": "203.0.113.9"})
        assert error(forwarded) == (400, "ValidationException")
        assert error(await client.request("DELETE", value_path)) == (405, "MethodNotAllowed")
        assert error(await client.compat("/err/none")) == (404, "ParameterNotFound")
        assert error(await client.compat("/err/a", version="1", label="x")) == (
            400,
            "ValidationException",
        )
        # Over the cap: one long-poll holds the only slot.
        poll = asyncio.create_task(
            client.get(value_path, headers={"If-None-Match": '"1"'}, params={"wait": "3s"})
        )
        try:
            deadline = time.monotonic() + 5
            while (reply := await client.compat("/err/a")).status != 429:
                assert reply.status == 200 and time.monotonic() < deadline
            assert error(reply) == (429, "TooManyRequestsException")
        finally:
            poll.cancel()


async def test_503_before_the_first_complete_load(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/nr/a", Value="x", Type="String")
    entries = [{"path": "/nr"}, {"name": "/nr-missing/required"}]
    cfg = ssm_config(moto_url, entries, tmp_path, http=http_section(tmp_path))
    async with serving(cfg, wait_ready=False) as (agent, client):
        await asyncio.wait_for(agent.refresher.cycle(), 10)  # a load that is not complete
        assert not agent.state.ready
        assert error(await client.get("/v1/parameters/nr/a")) == (503, "NotReady")
        assert error(await client.compat("/nr/a")) == (503, "NotReady")
        assert error(await client.get("/readyz", token=None)) == (503, "NotReady")
        health = (await client.get("/healthz", token=None)).json()
        assert health["ready"] is False
        assert health["errors"] == [{"name": "/nr-missing/required", "code": "ParameterNotFound"}]
        assert (await client.get("/ping", token=None)).text == "healthy"


async def test_long_poll_sees_a_put_within_one_interval(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/lp/a", Value="before", Type="String")
    cfg = ssm_config(
        moto_url, [{"path": "/lp"}], tmp_path, interval=f"{INTERVAL}s", http=http_section(tmp_path)
    )
    async with serving(cfg) as (_, client):
        first = await client.get("/v1/parameters/lp/a")
        assert first.headers["ETag"] == '"1"'
        poll = asyncio.create_task(
            client.get(
                "/v1/parameters/lp/a", headers={"If-None-Match": '"1"'}, params={"wait": "30s"}
            )
        )
        await asyncio.sleep(INTERVAL)  # the poll is held across at least one quiet cycle
        assert not poll.done()
        await asyncio.to_thread(
            ssm.put_parameter, Name="/lp/a", Value="after", Type="String", Overwrite=True
        )
        put_at = time.monotonic()
        reply = await asyncio.wait_for(poll, 10)
        waited = time.monotonic() - put_at
        assert reply.status == 200
        assert reply.text == "after"
        assert reply.headers["ETag"] == '"2"'
        # One interval (jitter is 0 in tests) plus the cycle's own calls.
        assert waited < INTERVAL + 0.5, waited

        started = time.monotonic()
        quiet = await client.get(
            "/v1/parameters/lp/a", headers={"If-None-Match": '"2"'}, params={"wait": "1s"}
        )
        assert quiet.status == 304
        assert quiet.headers["ETag"] == '"2"'
        assert 1.0 <= time.monotonic() - started < 2.0


async def test_post_refresh_reports_what_changed(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/rf/a", Value="one", Type="String")
    ssm.put_parameter(Name="/rf/s", Value="first-secret", Type="SecureString")
    cfg = ssm_config(
        moto_url, [{"path": "/rf"}], tmp_path, interval="1h", http=http_section(tmp_path)
    )
    async with serving(cfg) as (_, client):
        assert (await client.post("/v1/refresh")).json()["updated"] == []
        ssm.put_parameter(Name="/rf/s", Value="second-secret", Type="SecureString", Overwrite=True)
        ssm.put_parameter(Name="/rf/b", Value="new", Type="String")
        reply = await client.post("/v1/refresh")
        assert reply.status == 200
        assert reply.json() == {
            "ok": True,
            "complete": True,
            "added": [{"name": "/rf/b", "old_version": None, "new_version": 1}],
            "updated": [{"name": "/rf/s", "old_version": 1, "new_version": 2}],
            "removed": [],
            "errors": [],
        }
        assert "secret" not in reply.text.replace("/rf/s", "")
        assert (await client.get("/v1/parameters/rf/s")).text == "second-secret"


@pytest.fixture
def short_dir() -> Any:
    # A unix socket path must fit in 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="ssmsc-", dir="/tmp") as d:
        yield Path(d)


async def test_a_unix_socket_listener_serves_the_same_api(
    ssm: Any, moto_url: str, tmp_path: Path, short_dir: Path
) -> None:
    ssm.put_parameter(Name="/ux/a", Value="over a socket", Type="SecureString")
    socket_path = short_dir / "sub" / "agent.sock"
    http = http_section(tmp_path, listen=f"unix:{socket_path}")
    cfg = ssm_config(moto_url, [{"path": "/ux"}], tmp_path, interval="1h", http=http)
    async with serving(cfg) as (_, client):
        assert socket_path.is_socket()
        assert socket_path.stat().st_mode & 0o777 == 0o660
        assert (await client.get("/v1/parameters/ux/a")).text == "over a socket"
        compat = await client.compat("/ux/a", withDecryption="true")
        assert compat.json()["Parameter"]["Value"] == "over a socket"
        assert error(await client.get("/v1/parameters/ux/a", token=None))[0] == 401
        assert (await client.get("/ping", token=None)).text == "healthy"
        assert (await client.get("/readyz", token=None)).status == 200
    assert not socket_path.exists()  # removed on stop


async def test_a_stale_socket_file_is_replaced(
    ssm: Any, moto_url: str, tmp_path: Path, short_dir: Path
) -> None:
    import socket

    ssm.put_parameter(Name="/ux/a", Value="v", Type="String")
    path = short_dir / "agent.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed agent leaves behind
    http = http_section(tmp_path, listen=f"unix:{path}")
    cfg = ssm_config(moto_url, [{"path": "/ux"}], tmp_path, interval="1h", http=http)
    async with serving(cfg) as (_, client):
        assert (await client.get("/v1/parameters/ux/a")).text == "v"
