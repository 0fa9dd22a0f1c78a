"""`POST /` over a real HttpServer with an in-memory state (no SSM): headers, guard, on demand."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.config import ConfigError, HttpConfig, parse_config
from agent.metrics import Metrics
from agent.outputs.http.routes import aws_sdk
from agent.outputs.http.routes.aws_sdk import access_key_id, check_access_key
from agent.outputs.http.server import HttpServer
from agent.outputs.http.ssm_protocol import SdkError
from agent.results import CycleResult, SourceError
from agent.snapshot import Change, Parameter, Snapshot
from agent.state import AgentState
from tests.support.moto import free_port

AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/ssm/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "ab" * 32
)


def headers(operation: str, **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonSSM.{operation}",
        "Authorization": AUTH,
        **extra,
    }


def param(name: str, value: str, version: int = 1) -> Parameter:
    return Parameter(name, name.lstrip("/"), "String", value, version, datetime.now(UTC))


@dataclass
class OnDemand:
    answers: dict[str, Parameter | Exception | None] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(self, name: str) -> Parameter | None:
        self.calls.append(name)
        found = self.answers.get(name)
        if isinstance(found, Exception):
            raise found
        return found


@dataclass
class Sdk:
    state: AgentState
    on_demand: OnDemand
    url: str
    session: aiohttp.ClientSession

    async def call(
        self, operation: str, body: dict[str, Any], **extra: str
    ) -> tuple[int, Any, Any]:
        async with self.session.post(
            self.url, data=json.dumps(body), headers=headers(operation, **extra)
        ) as resp:
            return resp.status, resp.headers, json.loads(await resp.read())


async def no_refresh() -> CycleResult:
    return CycleResult(True, True, Change())


@pytest.fixture
async def sdk(tmp_path: Path) -> AsyncIterator[Sdk]:
    cfg = HttpConfig(
        listen=f"127.0.0.1:{free_port()}",
        token_file=tmp_path / "token",
        on_demand_prefixes=("/dyn",),
    )
    state = AgentState()
    state.snapshot = Snapshot.build({"/app/a": param("/app/a", "value a", 2)}, 1)
    state.ready = True
    on_demand = OnDemand()
    server = HttpServer(
        cfg,
        state,
        Metrics(),
        refresh=no_refresh,
        on_demand=on_demand,
        interval=30.0,
        route_factories=[aws_sdk.route_factory()],
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Sdk(state, on_demand, f"http://{cfg.listen}/", session)
    finally:
        await server.stop()


async def test_answers_carry_the_aws_json_headers(sdk: Sdk) -> None:
    status, got_headers, body = await sdk.call("GetParameter", {"Name": "/app/a"})
    assert status == 200 and body["Parameter"]["Value"] == "value a"
    assert got_headers["Content-Type"] == "application/x-amz-json-1.1"
    first = got_headers["x-amzn-RequestId"]
    status, got_headers, body = await sdk.call("GetParameter", {"Name": "/app/none"})
    assert (status, body["__type"]) == (400, "ParameterNotFound")
    assert got_headers["Content-Type"] == "application/x-amz-json-1.1"
    assert got_headers["x-amzn-RequestId"] != first


async def test_on_demand_names_are_fetched_and_failures_are_5xx(sdk: Sdk) -> None:
    sdk.on_demand.answers["/dyn/x"] = param("/dyn/x", "lazy")
    sdk.on_demand.answers["/dyn/down"] = SourceError("GetParameter failed: timeout")
    status, _, body = await sdk.call("GetParameters", {"Names": ["/dyn/x", "/dyn/gone", "/o"]})
    assert status == 200
    assert [p["Value"] for p in body["Parameters"]] == ["lazy"]
    assert body["InvalidParameters"] == ["/dyn/gone", "/o"]
    assert sdk.on_demand.calls == ["/dyn/x", "/dyn/gone"]  # "/o" is outside the prefixes
    status, _, body = await sdk.call("GetParameter", {"Name": "/dyn/down"})
    assert (status, body["__type"]) == (500, "InternalServerError")
    assert "timeout" in body["message"]


async def test_not_ready_is_503_before_the_first_load(sdk: Sdk) -> None:
    sdk.state.ready = False
    status, _, body = await sdk.call("GetParameter", {"Name": "/app/a"})
    assert (status, body["__type"]) == (503, "NotReady")


async def test_host_header_must_be_loopback(sdk: Sdk) -> None:
    port = sdk.url.rsplit(":", 1)[1].rstrip("/")
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.2"):
        status, _, _ = await sdk.call("GetParameter", {"Name": "/app/a"}, Host=host)
        assert status == 200, host
    for host in (f"example.com:{port}", "10.0.0.1", f"[2001:db8::1]:{port}", "localhost.evil"):
        status, _, body = await sdk.call("GetParameter", {"Name": "/app/a"}, Host=host)
        assert (status, body["__type"]) == (403, "AccessDeniedException"), host


def test_access_key_id_comes_from_the_sigv4_credential() -> None:
    assert access_key_id(AUTH) == "AKIDEXAMPLE"
    for bad, code in (
        (None, "MissingAuthenticationTokenException"),
        ("", "MissingAuthenticationTokenException"),
        ("AWS AKID:signature", "IncompleteSignatureException"),
        (
            AUTH.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            "IncompleteSignatureException",
        ),
        (AUTH.split(", Signature")[0], "IncompleteSignatureException"),
    ):
        with pytest.raises(SdkError) as raised:
            access_key_id(bad)
        assert (raised.value.code, raised.value.status) == (code, 403)
    check_access_key("AKIDEXAMPLE", frozenset())
    check_access_key("AKIDEXAMPLE", frozenset({"AKIDEXAMPLE"}))
    with pytest.raises(SdkError) as denied:
        check_access_key("AKIDOTHER", frozenset({"AKIDEXAMPLE"}))
    assert (denied.value.code, denied.value.status) == ("AccessDeniedException", 400)


def test_config_refuses_malformed_access_key_ids() -> None:
    data: dict[str, Any] = {
        "source": {"type": "file", "path": "dev.toml"},
        "parameters": [{"path": "/app"}],
        "http": {"sdk_access_key_ids": ["AKIAEXAMPLE000000001", "AKIA EXAMPLE"]},
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(data, file="config.toml")
    assert str(raised.value) == (
        "config.toml: http.sdk_access_key_ids: 'AKIA EXAMPLE' is not an access key id "
        "(letters and digits only)"
    )
    data["http"]["sdk_access_key_ids"] = ["AKIAEXAMPLE000000001"]
    assert parse_config(data).http.sdk_access_key_ids == ("AKIAEXAMPLE000000001",)
