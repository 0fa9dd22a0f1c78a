"""What the shared guard refuses on every route of the API listener, and bad input that must be
a 400, never a 500: Forwarded headers, a Host that names no loopback address (DNS rebinding),
Unicode digits as versions, deeply nested JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.metrics import Metrics
from agent.outputs.http import OpsServer
from agent.outputs.http.routes import aws_sdk
from agent.outputs.http.server import HttpServer
from agent.state import AgentState
from tests.support.builders import parameter, snapshot
from tests.support.http_server import start_api
from tests.support.moto import free_port

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
SECRET = "checks-s3cret"
SDK_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonSSM.GetParameter",
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/ssm/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "ab" * 32
    ),
}
# (method, path, needs the token, body): every route of the API listener, and an unknown one.
ROUTES: list[tuple[str, str, bool, str | None]] = [
    ("GET", "/ping", False, None),
    ("GET", "/healthz", False, None),
    ("GET", "/readyz", False, None),
    ("GET", "/metrics", False, None),
    ("GET", "/v1/parameters/app/a", True, None),
    ("GET", "/v1/parameters?path=/app", True, None),
    ("GET", "/systemsmanager/parameters/get?name=/app/a", True, None),
    ("POST", "/v1/refresh", True, None),
    ("POST", "/", False, json.dumps({"Name": "/app/a"})),
    ("GET", "/no/such/endpoint", True, None),
]


@dataclass
class Api:
    base: str
    token: str
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: bool, body: str | None, **headers: str
    ) -> tuple[int, Any]:
        sent = dict(SDK_HEADERS) if path == "/" else {}
        if token:
            sent[TOKEN_HEADER] = self.token
        sent.update(headers)
        async with self.session.request(method, self.base + path, data=body, headers=sent) as resp:
            return resp.status, await resp.text()


async def start(tmp_path: Path, listen: str) -> HttpServer:
    served = snapshot(parameter("/app/a", SECRET, version=2))
    sdk = [aws_sdk.route_factory()]
    server, *_ = await start_api(tmp_path, listen=listen, served=served, route_factories=sdk)
    return server


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    listen = f"127.0.0.1:{free_port()}"
    server = await start(tmp_path, listen)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://{listen}", (tmp_path / "run" / "token").read_text(), session)
    finally:
        await server.stop()


def error_of(text: str) -> tuple[str, str]:
    body = json.loads(text)
    return body["__type"], body["message"]


@pytest.mark.parametrize("header", ["Forwarded", "X-Forwarded-For"])
async def test_proxy_headers_are_refused_on_every_route(api: Api, header: str) -> None:
    for method, path, token, body in ROUTES:
        status, text = await api.call(method, path, token, body, **{header: "for=203.0.113.7"})
        assert status == 400, (path, text)
        assert error_of(text)[0] == "ValidationException"
        assert header in error_of(text)[1]


async def test_a_host_that_is_not_loopback_is_refused_on_every_route(api: Api) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name; it must not read even the
    names that /metrics and /healthz show."""
    for method, path, token, body in ROUTES:
        status, text = await api.call(method, path, token, body, Host="rebind.example:2773")
        assert status == 403, (path, text)
        assert error_of(text)[0] == "AccessDeniedException"
        assert "Host" in error_of(text)[1]
        assert "/app/a" not in text
    port = api.base.rpartition(":")[2]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        status, text = await api.call("GET", "/metrics", False, None, Host=host)
        assert status == 200, host


async def test_a_request_without_host_is_not_a_browser_and_is_answered(api: Api) -> None:
    host, _, port = api.base.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /ping HTTP/1.0\r\n\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200")


async def test_unix_socket_and_ops_listeners_accept_any_host(tmp_path: Path) -> None:
    server = await start(tmp_path, f"unix:{tmp_path / 'api.sock'}")
    ops_port = free_port()
    ops = OpsServer(f"127.0.0.1:{ops_port}", AgentState(), Metrics())
    await ops.start()
    try:
        connector = aiohttp.UnixConnector(path=str(tmp_path / "api.sock"))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://x/ping", headers={"Host": "any.example"}) as resp,
        ):
            assert resp.status == 200
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{ops_port}/metrics"
            async with session.get(url, headers={"Host": "prometheus.example"}) as resp:
                assert resp.status == 200
    finally:
        await ops.stop()
        await server.stop()


@pytest.mark.parametrize(
    "query",
    [
        "name=/app/a&version=\u00b2",
        "name=/app/a:\u00b2",
        "name=/app/a&label=\u00b2",
        "name=/app/a:\u0663",  # an Arabic-Indic 3: int() takes it, SSM does not
    ],
)
async def test_unicode_digits_as_a_version_are_a_400(api: Api, query: str) -> None:
    with capture_logs() as logs:
        status, text = await api.call("GET", "/systemsmanager/parameters/get?" + query, True, None)
    assert status == 400, text
    assert error_of(text)[0] == "ValidationException"
    assert not [e for e in logs if e["log_level"] == "error"]


async def test_sdk_bad_names_and_deep_json_are_a_400(api: Api) -> None:
    # Deeper than the JSON parser recurses, yet within http.max_body_bytes (64 KiB).
    deep = "[" * 30_000 + "]" * 30_000
    cases = [
        (json.dumps({"Name": "/app/a:\u00b2"}), "ValidationException"),
        (json.dumps({"Names": ["/app/a:\u00b2"]}), "ValidationException"),
        (deep, "SerializationException"),
        ('{"Name": ' + deep + "}", "SerializationException"),
    ]
    with capture_logs() as logs:
        for body, code in cases:
            target = "AmazonSSM.GetParameters" if "Names" in body else "AmazonSSM.GetParameter"
            status, text = await api.call("POST", "/", False, body, **{"X-Amz-Target": target})
            assert (status, error_of(text)[0]) == (400, code), body[:40]
    assert not [e for e in logs if e["log_level"] == "error"]
