"""Why a read fails, in the answer: a 404 says whether the name is missing from the source or
outside what the agent is configured to serve; a 503 says what kept the first load from
completing (the source's error, the failing names), never a value."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.agents import ssm_config
from tests.support.http_api import Reply, http_section, serving

SECRET = "not-found-s3cret"


def error(reply: Reply) -> tuple[int, str, str]:
    body = reply.json()
    return reply.status, body["__type"], body["message"]


async def test_404_tells_missing_from_the_source_from_outside_the_set(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/nf/app/a", Value=SECRET, Type="SecureString")
    entries: list[dict[str, Any]] = [{"path": "/nf/app"}, {"name": "/nf/one", "required": False}]
    cfg = ssm_config(moto_url, entries, tmp_path, http=http_section(tmp_path))
    async with serving(cfg) as (_, client):
        for reply in (
            await client.get("/v1/parameters/nf/app/typo"),
            await client.compat("/nf/app/typo"),
        ):
            status, code, message = error(reply)
            assert (status, code) == (404, "ParameterNotFound")
            assert "/nf/app/typo was not found in the parameter source" in message
            assert "[[parameters]] path /nf/app" in message
            assert "outside" not in message

        status, code, message = error(await client.get("/v1/parameters/nf/one"))
        assert (status, code) == (404, "ParameterNotFound")
        assert "not found in the parameter source" in message
        assert "[[parameters]] name /nf/one" in message
        assert "ParameterNotFound" in message  # what the source answered for it

        for reply in (
            await client.get("/v1/parameters/elsewhere/x"),
            await client.compat("/elsewhere/x"),
        ):
            status, code, message = error(reply)
            assert (status, code) == (404, "ParameterNotFound")
            assert "is outside the agent's configured set" in message
            assert "parameter source" not in message


async def test_503_says_why_the_first_load_is_not_complete(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/nr2/a", Value=SECRET, Type="SecureString")
    entries = [{"path": "/nr2"}, {"name": "/nr2-missing/required"}]
    cfg = ssm_config(moto_url, entries, tmp_path, http=http_section(tmp_path))
    async with serving(cfg, wait_ready=False) as (agent, client):
        await asyncio.wait_for(agent.refresher.cycle(), 10)
        assert not agent.state.ready
        for reply in (
            await client.get("/v1/parameters/nr2/a"),
            await client.compat("/nr2/a"),
            await client.get("/readyz", token=None),
        ):
            status, code, message = error(reply)
            assert (status, code) == (503, "NotReady")
            assert "/nr2-missing/required (ParameterNotFound)" in message
            assert SECRET not in message


async def test_503_carries_the_source_error(moto_url: str, tmp_path: Path) -> None:
    # Nothing listens on port 9: every cycle fails with a connection error.
    cfg = ssm_config(
        "http://127.0.0.1:9", [{"path": "/down"}], tmp_path, http=http_section(tmp_path)
    )
    async with serving(cfg, wait_ready=False) as (agent, client):
        await asyncio.wait_for(agent.refresher.cycle(), 20)
        assert agent.state.last_error
        status, code, message = error(await client.get("/v1/parameters/down/a"))
        assert (status, code) == (503, "NotReady")
        assert "last error: " in message
        assert agent.state.last_error[:40] in message
