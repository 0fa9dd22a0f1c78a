"""The API's Router (agent/outputs/http/dispatch.py) against aiohttp's own router, and what the
Guard does around it now that there is no aiohttp Application: 404/405 as JSON under the
`unmatched` label, template values, `Expect: 100-continue`."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from agent.outputs.http.dispatch import Router, canonical
from tests.support.http_api import metric_value
from tests.support.http_server import Api, error_of

#: The API's route table (method, path) as build_guard assembles it.
TABLE = [
    ("GET", "/ping"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/systemsmanager/parameters/get"),
    ("GET", "/v1/parameters/{name:.+}"),
    ("GET", "/v1/parameters"),
    ("POST", "/v1/refresh"),
    ("GET", "/secretsmanager/get"),
    ("GET", "/v1/secrets/{id:.+}"),
    ("GET", "/v1/secrets"),
    ("POST", "/"),
    ("GET", "/v1/{family}/one/{item}"),  # a one-segment variable, as aiohttp's `{var}`
]

PATHS = [
    "/",
    "/ping",
    "/ping/",
    "/PING",
    "/metrics",
    "/systemsmanager/parameters/get",
    "/systemsmanager/parameters/get/",
    "/systemsmanager/parameters",
    "/v1",
    "/v1/",
    "/v1/parameters",
    "/v1/parameters/",
    "/v1/parameters/app/db/url",
    "/v1/parameters/a%2Fb%20c",
    "/v1/parameters/a%252F",
    "/v1/parameters/line%0Abreak",
    "/v1/parameters//double",
    "/v1/secrets/prod/db",
    "/v1/secrets",
    "/v1/refresh",
    "/v1/x/one/y",
    "/v1/x/one/y/z",
    "/v1/x/one/",
    "/nope",
    "/v1/parametersX",
]

METHODS = ["GET", "POST", "HEAD", "DELETE", "get"]


async def _aiohttp_answer(app: web.Application, method: str, path: str) -> object:
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    if match.http_exception is not None:
        return match.http_exception.status
    return (match.route.resource.canonical, method, dict(match))  # type: ignore[union-attr]


def _router_answer(router: Router[object], method: str, path: str) -> object:
    request = make_mocked_request(method, path)
    found = router.find(request)
    if isinstance(found, int):
        return found
    return (found, method, dict(getattr(request, "path_values", {})))


async def _handler(request: web.Request) -> web.StreamResponse:
    return web.Response()


async def test_router_finds_what_aiohttps_router_finds() -> None:
    app = web.Application()
    router: Router[object] = Router(404, 405)
    for method, path in TABLE:
        app.router.add_route(method, path, _handler)
        router.add(method, path, canonical(path))
    for method in METHODS:
        for path in PATHS:
            expected = await _aiohttp_answer(app, method, path)
            if isinstance(expected, tuple) and expected[1] != method:
                expected = 405
            assert _router_answer(router, method, path) == expected, (method, path)


def test_template_values_are_decoded_as_aiohttp_decodes_them() -> None:
    router: Router[str] = Router("404", "405")
    router.add("GET", "/v1/parameters/{name:.+}", "value")
    request = make_mocked_request("GET", "/v1/parameters/app%2Fdb%20url%2525")
    assert router.find(request) == "value"
    assert getattr(request, "path_values", None) == {"name": "app/db url%25"}


def test_exact_paths_win_over_templates_and_longer_prefixes_over_shorter() -> None:
    router: Router[str] = Router("404", "405")
    router.add("GET", "/v1/{any:.+}", "short")
    router.add("GET", "/v1/parameters/{name:.+}", "long")
    router.add("GET", "/v1/parameters/fixed", "exact")
    assert router.find(make_mocked_request("GET", "/v1/parameters/fixed")) == "exact"
    assert router.find(make_mocked_request("GET", "/v1/parameters/other")) == "long"
    assert router.find(make_mocked_request("GET", "/v1/secrets")) == "short"
    assert router.find(make_mocked_request("PUT", "/v1/parameters/fixed")) == "405"


def test_canonical_labels_hide_the_regex() -> None:
    assert canonical("/v1/parameters/{name:.+}") == "/v1/parameters/{name}"
    assert canonical("/v1/{a}/x/{b:\\d{2}}") == "/v1/{a}/x/{b}"
    assert canonical("/systemsmanager/parameters/get") == "/systemsmanager/parameters/get"


def test_a_route_added_twice_or_a_path_that_needs_quoting_is_refused() -> None:
    router: Router[str] = Router("404", "405")
    router.add("GET", "/ping", "a")
    with pytest.raises(ValueError, match="twice"):
        router.add("GET", "/ping", "b")
    with pytest.raises(ValueError, match="quoting"):
        router.add("GET", "/with space", "c")
    with pytest.raises(ValueError, match="invalid"):
        router.add("GET", "/v1/x}{a}", "d")


async def test_unknown_paths_and_methods_are_json_and_counted_unmatched(api: Api) -> None:
    status, code, _ = error_of(await api.client.get("/v1/parameters/", token=None))
    assert (status, code) == (404, "NotFound")
    status, code, _ = error_of(await api.client.request("PATCH", "/v1/parameters/app/db/url"))
    assert (status, code) == (405, "MethodNotAllowed")
    # The origin guards run before the 404: a relayed request learns nothing about paths.
    reply = await api.client.get("/nope", headers={"X-Forwarded-For": "10.0.0.1"})
    assert reply.status == 400
    text = (await api.client.get("/metrics", token=None)).text
    total = "ssm_sidecar_http_requests_total"
    assert metric_value(text, total, route="unmatched", code="404") == 1
    assert metric_value(text, total, route="unmatched", code="405") == 1
    assert metric_value(text, total, route="unmatched", code="400") == 1


async def test_an_encoded_slash_in_a_name_reaches_the_parameter(api: Api) -> None:
    reply = await api.client.get("/v1/parameters/app%2Fdb%2Furl")
    assert (reply.status, reply.text) == (200, "postgres://db/app")


async def _raw_exchange(api: Api, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(what the server sent before the body was sent, everything after), over one socket."""
    host, port = api.client.base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(body)
        final = await asyncio.wait_for(reader.read(65536), 5) if body else b""
        return interim, final
    finally:
        writer.close()


async def test_expect_100_continue_is_answered_once_the_guards_pass(api: Api) -> None:
    token = api.client.token
    head = (
        "POST /v1/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-Aws-Parameters-Secrets-Token: {token}\r\n"
        "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    ).encode()
    interim, final = await _raw_exchange(api, head, b"{}")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 ")
    # Without the token the final answer comes at once: no body is asked for.
    refused, _ = await _raw_exchange(api, head.replace(token.encode(), b"wrong"), b"")
    assert refused.startswith(b"HTTP/1.1 403 ")


async def test_an_unknown_expectation_is_a_json_417(api: Api) -> None:
    reply = await api.client.post("/v1/refresh", headers={"Expect": "teapot"})
    status, code, message = error_of(reply)
    assert (status, code) == (417, "ExpectationFailed")
    assert "teapot" in message
