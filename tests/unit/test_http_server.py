"""The HTTP API over an in-memory AgentState (no SSM): shapes, guards, errors, long-polls."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from dotenv import dotenv_values

from agent.config import HttpConfig
from agent.metrics import Metrics
from agent.outputs.http.context import HttpContext, Route
from agent.outputs.http.server import HttpServer
from agent.results import CycleResult, ParameterError, SourceError
from agent.snapshot import Change, Parameter, Snapshot, VersionChange
from agent.state import AgentState
from tests.support.http_api import (
    ApiClient,
    metric_value,
)
from tests.support.moto import free_port
from tests.support.waiting import async_wait_until

MODIFIED = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
SECRET = "hunter2-plaintext"
CIPHER = "AQICAHENCRYPTEDBLOB=="
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def param(
    name: str,
    value: str = "v",
    version: int = 1,
    *,
    kind: str = "String",
    key: str | None = None,
    selector: str | None = None,
    encrypted: str | None = None,
) -> Parameter:
    return Parameter(
        name,
        key or name.lstrip("/"),
        kind,
        value,
        version,
        MODIFIED,
        arn=f"arn:aws:ssm:us-east-1:123456789012:parameter/{name.lstrip('/')}",
        selector=selector,
        encrypted_value=encrypted,
    )


def snapshot(*params: Parameter, generation: int = 1) -> Snapshot:
    return Snapshot.build({p.name: p for p in params}, generation)


STANDARD = (
    param("/app/db/url", "postgres://db/app", 3, key="db/url"),
    param("/app/db/password", SECRET, 7, kind="SecureString", key="db/password", encrypted=CIPHER),
    param("/app/name", 'it\'s a \\ "quoted"\nvalue $HOME', 1, key="name"),
    param("/pinned", "old", 2, selector=":2"),
    param("/labelled", "stable-value", 5, selector=":stable"),
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
) -> tuple[HttpServer, AgentState, Fakes, Metrics, HttpConfig]:
    cfg = HttpConfig(
        listen=f"127.0.0.1:{free_port()}",
        token_file=tmp_path / "run" / "token",
        on_demand_prefixes=("/dyn",),
        max_concurrency=max_concurrency,
    )
    state = AgentState()
    state.snapshot = snapshot(*STANDARD)
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


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    server, state, fakes, metrics, cfg = await start_api(tmp_path)
    token = cfg.token_file.read_text()
    async with aiohttp.ClientSession() as session:
        client = ApiClient(f"http://{cfg.listen}", token, session)
        yield Api(client, server, state, fakes, metrics, cfg.token_file)
    await server.stop()


def error_of(reply: Any) -> tuple[int, str, str]:
    body = reply.json()
    assert set(body) == {"__type", "message"}, body
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.status, body["__type"], body["message"]


# --- Lambda-extension compatible route ---------------------------------------------------------


async def test_compat_answers_the_get_parameter_shape(api: Api) -> None:
    reply = await api.client.compat("/app/db/url")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {
        "Parameter": {
            "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/url",
            "DataType": "text",
            "LastModifiedDate": "2026-03-04T05:06:07.891Z",
            "Name": "/app/db/url",
            "Selector": None,
            "SourceResult": None,
            "Type": "String",
            "Value": "postgres://db/app",
            "Version": 3,
        },
        "ResultMetadata": {},
    }


@pytest.mark.parametrize(
    ("flag", "expected"),
    [(None, CIPHER), ("false", CIPHER), ("true", SECRET), ("True", SECRET)],
)
async def test_secure_string_is_encrypted_unless_with_decryption(
    api: Api, flag: str | None, expected: str
) -> None:
    params = {} if flag is None else {"withDecryption": flag}
    reply = await api.client.compat("/app/db/password", **params)
    assert reply.status == 200
    assert reply.json()["Parameter"]["Value"] == expected
    assert RFC3339_MS.match(reply.json()["Parameter"]["LastModifiedDate"])


@pytest.mark.parametrize(
    ("name", "params", "selector"),
    [
        ("/app/db/url:3", {}, ":3"),
        ("/app/db/url", {"version": "3"}, ":3"),
        ("/pinned:2", {}, ":2"),
        ("/labelled:stable", {}, ":stable"),
        ("/labelled", {"label": "stable"}, ":stable"),
        ("/labelled:5", {}, ":5"),
        ("/pinned", {}, None),
    ],
)
async def test_selectors_the_agent_holds_are_answered(
    api: Api, name: str, params: dict[str, str], selector: str | None
) -> None:
    reply = await api.client.compat(name, **params)
    assert reply.status == 200, reply.text
    assert reply.json()["Parameter"]["Selector"] == selector
    assert not api.fakes.on_demand_calls


async def test_a_version_the_agent_does_not_hold_is_a_clear_404(api: Api) -> None:
    status, code, message = error_of(await api.client.compat("/app/db/url:2"))
    assert (status, code) == (404, "ParameterNotFound")
    assert "version 3" in message and ":2" in message and "on_demand_prefixes" in message
    status, code, message = error_of(await api.client.compat("/app/db/password", label="beta"))
    assert (status, code) == (404, "ParameterNotFound")
    assert SECRET not in message and CIPHER not in message


async def test_an_arn_finds_the_parameter_it_names(api: Api) -> None:
    arn = "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/url"
    reply = await api.client.compat(arn + ":3")
    assert reply.status == 200
    assert reply.json()["Parameter"]["Name"] == "/app/db/url"
    assert reply.json()["Parameter"]["Selector"] == ":3"
    other_account = arn.replace("123456789012", "999999999999")
    assert (await api.client.compat(other_account)).status == 404


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"name": "/app/db/url", "version": "3", "label": "x"}, "version and label"),
        ({"name": "/app/db/url:3", "version": "3"}, "already carries"),
        ({"name": "/app/db/url", "version": "three"}, "positive integer"),
        ({"name": "/app/db/url", "version": "0"}, "positive integer"),
        ({"name": "/app/db/url:"}, "empty selector"),
        ({"name": "/app/db/url", "withDecryption": "yes"}, "withDecryption"),
        ({}, "name"),
    ],
)
async def test_bad_arguments_are_validation_errors(
    api: Api, params: dict[str, str], needle: str
) -> None:
    reply = await api.client.get("/systemsmanager/parameters/get", params=params)
    status, code, message = error_of(reply)
    assert (status, code) == (400, "ValidationException")
    assert needle in message


async def test_unknown_name_is_404_outside_the_configured_set(api: Api) -> None:
    status, code, message = error_of(await api.client.compat("/elsewhere/x"))
    assert (status, code) == (404, "ParameterNotFound")
    assert "outside the agent's configured set" in message
    assert not api.fakes.on_demand_calls


async def test_names_under_on_demand_prefixes_are_fetched(api: Api) -> None:
    api.fakes.on_demand["/dyn/a"] = param("/dyn/a", "lazy", 4)
    api.fakes.on_demand["/dyn/a:2"] = param("/dyn/a", "older", 2)
    api.fakes.on_demand["/dyn/broken"] = SourceError("GetParameter throttled: Throttling")
    reply = await api.client.compat("/dyn/a")
    assert reply.json()["Parameter"]["Value"] == "lazy"
    reply = await api.client.compat("/dyn/a", version="2")
    assert reply.json()["Parameter"]["Value"] == "older"
    assert reply.json()["Parameter"]["Selector"] == ":2"
    status, code, message = error_of(await api.client.compat("/dyn/missing"))
    assert (status, code) == (404, "ParameterNotFound") and "not found in the parameter" in message
    status, code, message = error_of(await api.client.compat("/dyn/broken"))
    assert (status, code) == (502, "SourceUnavailable") and "throttled" in message
    native = await api.client.get("/v1/parameters/dyn/a")
    assert native.text == "lazy"
    expected = ["/dyn/a", "/dyn/a:2", "/dyn/missing", "/dyn/broken", "/dyn/a"]
    assert api.fakes.on_demand_calls == expected


# --- guards and errors -------------------------------------------------------------------------


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
    server, state, _, _, cfg = await start_api(tmp_path, ready=False)
    try:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", cfg.token_file.read_text(), session)
            for path in ("/v1/parameters/app/db/url", "/v1/parameters?path=/app"):
                assert error_of(await client.get(path))[:2] == (503, "NotReady")
            assert error_of(await client.compat("/app/db/url"))[:2] == (503, "NotReady")
            assert error_of(await client.get("/readyz"))[:2] == (503, "NotReady")
            assert (await client.get("/ping", token=None)).text == "healthy"
            assert (await client.get("/healthz", token=None)).json()["ready"] is False
            # The token is checked first: an unauthenticated caller learns nothing.
            assert (await client.get("/v1/parameters/app/db/url", token=None)).status == 401
            state.ready = True
            assert (await client.get("/readyz", token=None)).status == 200
            assert (await client.get("/v1/parameters/app/db/url")).status == 200
    finally:
        await server.stop()


async def test_over_the_concurrency_cap_is_429(tmp_path: Path) -> None:
    server, _, fakes, _, cfg = await start_api(tmp_path, max_concurrency=2)
    fakes.on_demand_gate = asyncio.Event()
    fakes.on_demand["/dyn/slow"] = param("/dyn/slow", "late")
    try:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", cfg.token_file.read_text(), session)
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
    finally:
        await server.stop()


async def test_sdk_protocol_seam(tmp_path: Path) -> None:
    server, _, _, _, cfg = await start_api(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", "", session)
            status, code, message = error_of(
                await client.post(
                    "/", token=None, headers={"X-Amz-Target": "AmazonSSM.GetParameter"}
                )
            )
            assert (status, code) == (400, "UnknownOperationException")
            assert "not enabled" in message
    finally:
        await server.stop()

    async def sdk(request: web.Request) -> web.StreamResponse:
        return web.json_response({"target": request.headers.get("X-Amz-Target")})

    server, _, _, _, cfg = await start_api(
        tmp_path, route_factories=[lambda ctx: [Route("POST", "/", sdk, needs_token=False)]]
    )
    try:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", "", session)
            reply = await client.post(
                "/", token=None, headers={"X-Amz-Target": "AmazonSSM.GetParameter"}
            )
            assert reply.json() == {"target": "AmazonSSM.GetParameter"}
            reply = await client.post("/", token=None, headers={"X-Forwarded-For": "1.2.3.4"})
            assert reply.status == 400  # the shared guards still apply
            text = (await client.get("/metrics")).text
            assert metric_value(text, "ssm_sidecar_http_requests_total", route="/", code="200") == 1
    finally:
        await server.stop()


# --- native API --------------------------------------------------------------------------------


async def test_native_value_is_raw_text_with_version_headers(api: Api) -> None:
    reply = await api.client.get("/v1/parameters/app/db/password")
    assert reply.status == 200
    assert reply.body == SECRET.encode()
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert reply.headers["ETag"] == '"7"'
    assert reply.headers["X-Parameter-Version"] == "7"
    assert reply.headers["Last-Modified"] == "Wed, 04 Mar 2026 05:06:07 GMT"
    missing = await api.client.get("/v1/parameters/not/here")
    assert error_of(missing)[:2] == (404, "ParameterNotFound")


async def test_if_none_match_gives_304(api: Api) -> None:
    path = "/v1/parameters/app/db/url"
    for tag in ('"3"', 'W/"3"', '"1", "3"', "*"):
        reply = await api.client.get(path, headers={"If-None-Match": tag})
        assert reply.status == 304, tag
        assert reply.body == b""
        assert reply.headers["ETag"] == '"3"'
    assert (await api.client.get(path, headers={"If-None-Match": '"2"'})).status == 200


async def test_long_poll_returns_the_new_version_on_swap(api: Api) -> None:
    path = "/v1/parameters/app/db/url"
    poll = asyncio.create_task(
        api.client.get(path, headers={"If-None-Match": '"3"'}, params={"wait": "30s"})
    )
    await asyncio.sleep(0.05)  # let the request reach its wait; correctness does not depend on it
    assert not poll.done()
    # An unrelated swap does not end the poll.
    unrelated = [p for p in STANDARD if p.name != "/app/name"] + [param("/app/name", "x", 2)]
    await api.state.swap(snapshot(*unrelated, generation=2))
    await asyncio.sleep(0.05)
    assert not poll.done()
    changed = [p for p in unrelated if p.name != "/app/db/url"]
    changed.append(param("/app/db/url", "postgres://db/new", 4, key="db/url"))
    started = asyncio.get_running_loop().time()
    await api.state.swap(snapshot(*changed, generation=3))
    reply = await asyncio.wait_for(poll, 5)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert reply.status == 200
    assert reply.text == "postgres://db/new"
    assert reply.headers["ETag"] == '"4"'


async def test_long_poll_gives_304_at_the_deadline(api: Api) -> None:
    started = asyncio.get_running_loop().time()
    reply = await api.client.get(
        "/v1/parameters/app/db/url", headers={"If-None-Match": '"3"'}, params={"wait": "300ms"}
    )
    elapsed = asyncio.get_running_loop().time() - started
    assert reply.status == 304
    assert 0.3 <= elapsed < 2.0


async def test_long_poll_ends_when_the_server_stops(tmp_path: Path) -> None:
    server, _, _, _, cfg = await start_api(tmp_path)
    async with aiohttp.ClientSession() as session:
        client = ApiClient(f"http://{cfg.listen}", cfg.token_file.read_text(), session)
        poll = asyncio.create_task(
            client.get(
                "/v1/parameters/app/db/url", headers={"If-None-Match": '"3"'}, params={"wait": "5m"}
            )
        )
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await server.stop()
        reply = await asyncio.wait_for(poll, 5)
        assert reply.status == 304
        assert asyncio.get_running_loop().time() - started < 1.5


async def test_bad_wait_is_a_validation_error(api: Api) -> None:
    reply = await api.client.get(
        "/v1/parameters/app/db/url", headers={"If-None-Match": '"3"'}, params={"wait": "soon"}
    )
    assert error_of(reply)[:2] == (400, "ValidationException")


async def test_listing_as_json_and_dotenv(api: Api) -> None:
    reply = await api.client.get("/v1/parameters", params={"path": "/app"})
    assert reply.json() == {
        "DB_PASSWORD": SECRET,
        "DB_URL": "postgres://db/app",
        "NAME": STANDARD[2].value,
    }
    flat = await api.client.get("/v1/parameters", params={"path": "/app", "recursive": "false"})
    assert flat.json() == {"NAME": STANDARD[2].value}
    sub = await api.client.get("/v1/parameters", params={"path": "/app/db"})
    assert sub.json() == {"DB_PASSWORD": SECRET, "DB_URL": "postgres://db/app"}
    dotenv = await api.client.get("/v1/parameters", params={"path": "/app", "format": "dotenv"})
    assert dotenv.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert dict(dotenv_values(stream=io.StringIO(dotenv.text), interpolate=False)) == {
        "DB_PASSWORD": SECRET,
        "DB_URL": "postgres://db/app",
        "NAME": STANDARD[2].value,
    }
    for params in ({"path": "/app", "format": "xml"}, {"path": "app"}, {}):
        assert error_of(await api.client.get("/v1/parameters", params=params))[0] == 400


async def test_a_listing_whose_env_names_collide_is_refused_naming_keys(api: Api) -> None:
    await api.state.swap(snapshot(param("/c/a-b", SECRET), param("/c/a_b", "x")))
    reply = await api.client.get("/v1/parameters", params={"path": "/c", "format": "dotenv"})
    status, code, message = error_of(reply)
    assert (status, code) == (400, "ValidationException")
    assert "c/a-b" in message and "c/a_b" in message and SECRET not in message


async def test_refresh_returns_names_and_versions_only(api: Api) -> None:
    change = Change(updated=(VersionChange("/app/db/password", 7, 8),))
    errors = (ParameterError("/app/gone", "ParameterNotFound", "not found"),)
    api.fakes.refresh_result = CycleResult(True, True, change, errors)
    reply = await api.client.post("/v1/refresh")
    assert reply.status == 200
    assert reply.json() == {
        "ok": True,
        "complete": True,
        "added": [],
        "updated": [{"name": "/app/db/password", "old_version": 7, "new_version": 8}],
        "removed": [],
        "errors": [{"name": "/app/gone", "code": "ParameterNotFound"}],
    }
    api.fakes.refresh_result = CycleResult(False, False, Change(), reason="GetParameters throttled")
    status, code, message = error_of(await api.client.post("/v1/refresh"))
    assert (status, code) == (502, "SourceUnavailable") and "throttled" in message


async def test_concurrent_refresh_requests_share_one_cycle(api: Api) -> None:
    api.fakes.refresh_gate = asyncio.Event()
    posts = [asyncio.create_task(api.client.post("/v1/refresh")) for _ in range(3)]
    await async_wait_until(lambda: api.fakes.refresh_calls == 1, 5, what="refresh started")
    await asyncio.sleep(0.05)
    api.fakes.refresh_gate.set()
    replies = await asyncio.gather(*posts)
    assert [r.status for r in replies] == [200, 200, 200]
    assert api.fakes.refresh_calls == 1
    assert (await api.client.post("/v1/refresh")).status == 200
    assert api.fakes.refresh_calls == 2


# --- operations --------------------------------------------------------------------------------


async def test_healthz_reports_state_without_values(api: Api) -> None:
    api.state.record_success()
    api.state.parameter_errors = (
        ParameterError("/app/denied", "AccessDeniedException", f"denied {SECRET}"),
    )
    reply = await api.client.get("/healthz", token=None)
    body = reply.json()
    assert reply.status == 200
    assert body["ready"] is True
    assert body["parameters"] == len(STANDARD)
    assert RFC3339_MS.match(body["last_success"])
    assert 0 <= body["seconds_since_success"] < 5
    assert body["consecutive_failures"] == 0 and body["last_error"] is None
    assert body["errors"] == [{"name": "/app/denied", "code": "AccessDeniedException"}]
    assert SECRET not in reply.text and CIPHER not in reply.text


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
    server, _, _, _, cfg = await start_api(tmp_path)
    token = cfg.token_file.read_text()
    await server.stop()
    assert len(token) >= 40
    assert cfg.token_file.stat().st_mode & 0o777 == 0o440
    assert cfg.token_file.parent.stat().st_mode & 0o777 == 0o750
    server, _, _, _, cfg = await start_api(tmp_path)
    try:
        assert cfg.token_file.read_text() == token
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", token, session)
            assert (await client.get("/v1/parameters/app/db/url")).status == 200
    finally:
        await server.stop()


async def test_dates_in_any_timezone_are_rendered_in_utc(api: Api) -> None:
    from datetime import timedelta, timezone

    local = datetime(2026, 3, 4, 7, 6, 7, 5000, tzinfo=timezone(timedelta(hours=2)))
    p = Parameter("/tz", "tz", "String", "v", 1, local)
    await api.state.swap(snapshot(p))
    native = await api.client.get("/v1/parameters/tz")
    assert native.headers["Last-Modified"] == "Wed, 04 Mar 2026 05:06:07 GMT"
    compat = await api.client.compat("/tz")
    assert compat.json()["Parameter"]["LastModifiedDate"] == "2026-03-04T05:06:07.005Z"


async def test_a_client_that_hangs_up_frees_its_slot(tmp_path: Path) -> None:
    server, _, _, _, cfg = await start_api(tmp_path, max_concurrency=1)
    try:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(f"http://{cfg.listen}", cfg.token_file.read_text(), session)
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
    finally:
        await server.stop()


def test_query_flags_accept_true_false_in_any_case_and_refuse_the_rest() -> None:
    from agent.outputs.http.context import ApiError, query_flag

    assert query_flag("withDecryption", None, False) is False
    assert query_flag("recursive", None, True) is True
    assert query_flag("withDecryption", "TRUE", False) is True
    assert query_flag("recursive", "False", True) is False
    with pytest.raises(ApiError, match="withDecryption must be true or false, got 'yes'") as exc:
        query_flag("withDecryption", "yes", False)
    assert (exc.value.status, exc.value.code) == (400, "ValidationException")
