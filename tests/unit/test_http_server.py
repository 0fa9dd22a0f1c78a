"""The HTTP server's Guard around every route (token, X-Forwarded-For, 404/405, readiness,
concurrency cap, request metrics by route template) and the AWS SDK protocol's seam."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from agent.outputs.http.context import Route
from tests.support.builders import parameter
from tests.support.http_api import metric_value
from tests.support.http_server import CIPHER, SECRET, Api, api_for, error_of
from tests.support.waiting import async_wait_until


async def test_token_missing_401_wrong_403(api: Api) -> None:
    for path in ("/systemsmanager/parameters/get?name=/app/db/url", "/v1/parameters/app/db/url"):
        status, code, _ = error_of(await api.client.get(path, token=None))
        assert (status, code) == (401, "MissingTokenException")
        status, code, _ = error_of(await api.client.get(path, token="nope"))
        assert (status, code) == (403, "AccessDeniedException")
        status, code, _ = error_of(await api.client.get(path, token=api.client.token + "x"))
        assert status == 403
        assert (await api.client.get(path, token=api.client.token)).status == 200
    assert (await api.client.post("/v1/refresh", token=None)).status == 401


async def test_x_forwarded_for_is_refused_everywhere(api: Api) -> None:
    for path in ("/v1/parameters/app/db/url", "/ping", "/metrics"):
        reply = await api.client.get(path, headers={"X-Forwarded-For": "10.0.0.1"})
        status, code, message = error_of(reply)
        assert (status, code) == (400, "ValidationException")
        assert "X-Forwarded-For" in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/systemsmanager/parameters/get?name=/app/db/url"),
        ("DELETE", "/v1/parameters/app/db/url"),
        ("PUT", "/v1/parameters/app/db/url"),
        ("HEAD", "/v1/parameters/app/db/url"),
        ("GET", "/v1/refresh"),
        ("POST", "/ping"),
    ],
)
async def test_unlisted_methods_are_405(api: Api, method: str, path: str) -> None:
    reply = await api.client.request(method, path)
    assert reply.status == 405
    if method != "HEAD":
        assert error_of(reply)[1] == "MethodNotAllowed"


async def test_unknown_paths_are_json_404(api: Api) -> None:
    status, code, _ = error_of(await api.client.get("/nope"))
    assert (status, code) == (404, "NotFound")


async def test_before_the_first_load_data_routes_are_503(tmp_path: Path) -> None:
    async with api_for(tmp_path, ready=False) as api:
        client = api.client
        for path in ("/v1/parameters/app/db/url", "/v1/parameters?path=/app"):
            assert error_of(await client.get(path))[:2] == (503, "NotReady")
        assert error_of(await client.compat("/app/db/url"))[:2] == (503, "NotReady")
        assert error_of(await client.get("/readyz"))[:2] == (503, "NotReady")
        assert (await client.get("/ping", token=None)).text == "healthy"
        assert (await client.get("/healthz", token=None)).json()["ready"] is False
        # The token is checked first: an unauthenticated caller learns nothing.
        assert (await client.get("/v1/parameters/app/db/url", token=None)).status == 401
        api.state.ready = True
        assert (await client.get("/readyz", token=None)).status == 200
        assert (await client.get("/v1/parameters/app/db/url")).status == 200


async def test_over_the_concurrency_cap_is_429(tmp_path: Path) -> None:
    async with api_for(tmp_path, max_concurrency=2) as api:
        client, fakes = api.client, api.fakes
        fakes.on_demand_gate = asyncio.Event()
        fakes.on_demand["/dyn/slow"] = parameter("/dyn/slow", "late")
        held = [asyncio.create_task(client.compat("/dyn/slow")) for _ in range(2)]
        await async_wait_until(lambda: len(fakes.on_demand_calls) == 2, 5, what="2 in flight")
        status, code, message = error_of(await client.compat("/app/db/url"))
        assert (status, code) == (429, "TooManyRequestsException")
        assert "2" in message
        # Operations endpoints stay answerable under load (probes must not fail).
        assert (await client.get("/ping", token=None)).status == 200
        fakes.on_demand_gate.set()
        await asyncio.gather(*held)
        assert (await client.compat("/app/db/url")).status == 200


async def test_sdk_protocol_seam(tmp_path: Path) -> None:
    async with api_for(tmp_path) as api:
        status, code, message = error_of(
            await api.client.post(
                "/", token=None, headers={"X-Amz-Target": "AmazonSSM.GetParameter"}
            )
        )
        assert (status, code) == (400, "UnknownOperationException")
        assert "not enabled" in message

    async def sdk(request: web.Request) -> web.StreamResponse:
        return web.json_response({"target": request.headers.get("X-Amz-Target")})

    with_sdk = [lambda ctx: [Route("POST", "/", sdk, needs_token=False)]]
    async with api_for(tmp_path, route_factories=with_sdk) as api:
        client = api.client
        reply = await client.post(
            "/", token=None, headers={"X-Amz-Target": "AmazonSSM.GetParameter"}
        )
        assert reply.json() == {"target": "AmazonSSM.GetParameter"}
        reply = await client.post("/", token=None, headers={"X-Forwarded-For": "1.2.3.4"})
        assert reply.status == 400  # the shared guards still apply
        text = (await client.get("/metrics")).text
        assert metric_value(text, "ssm_sidecar_http_requests_total", route="/", code="200") == 1


async def test_metrics_count_by_route_template_and_never_show_values(api: Api) -> None:
    for _ in range(3):
        await api.client.get("/v1/parameters/app/db/password")
    await api.client.get("/v1/parameters/app/db/url")
    await api.client.get("/v1/parameters/nope")
    await api.client.compat("/app/db/password", withDecryption="true")
    await api.client.get("/v1/parameters/app/db/url", token=None)
    await api.client.get("/unknown/path")
    text = (await api.client.get("/metrics", token=None)).text
    route = "/v1/parameters/{name}"
    total = "ssm_sidecar_http_requests_total"
    assert metric_value(text, total, route=route, code="200") == 4
    assert metric_value(text, total, route=route, code="404") == 1
    assert metric_value(text, total, route=route, code="401") == 1
    compat = "/systemsmanager/parameters/get"
    assert metric_value(text, total, route=compat, code="200") == 1
    assert metric_value(text, total, route="unmatched", code="404") == 1
    count = "ssm_sidecar_http_request_duration_seconds_count"
    assert metric_value(text, count, route=route) == 6
    assert "app/db/password" not in text and SECRET not in text and CIPHER not in text


async def test_token_file_is_created_0440_and_reused(tmp_path: Path) -> None:
    async with api_for(tmp_path) as api:
        token_file = api.token_file
        token = token_file.read_text()
    assert len(token) >= 40
    assert token_file.stat().st_mode & 0o777 == 0o440
    assert token_file.parent.stat().st_mode & 0o777 == 0o750
    async with api_for(tmp_path) as api:
        assert api.token_file.read_text() == token
        assert (await api.client.get("/v1/parameters/app/db/url")).status == 200


async def test_a_client_that_hangs_up_frees_its_slot(tmp_path: Path) -> None:
    async with api_for(tmp_path, max_concurrency=1) as api:
        client, server = api.client, api.server
        poll = asyncio.create_task(
            client.get(
                "/v1/parameters/app/db/url",
                headers={"If-None-Match": '"3"'},
                params={"wait": "5m"},
            )
        )
        await async_wait_until(
            lambda: server.in_flight == 1, 5, what="the long-poll holds the slot"
        )
        assert (await client.compat("/app/db/url")).status == 429
        poll.cancel()  # closes the connection
        await async_wait_until(lambda: server.in_flight == 0, 5, what="slot freed")
        assert (await client.compat("/app/db/url")).status == 200
        text = (await client.get("/metrics")).text
        route = "/v1/parameters/{name}"
        total = "ssm_sidecar_http_requests_total"
        assert metric_value(text, total, route=route, code="499") == 1
