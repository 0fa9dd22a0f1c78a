"""The AWS SDK route (`POST /`) over a real HttpServer with an in-memory state (no SSM):
headers, the SigV4/loopback guard, on demand."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.outputs.http.routes import aws_sdk
from agent.outputs.http.routes.aws_sdk import access_key_id, check_access_key
from agent.outputs.http.ssm_protocol import SdkError
from agent.results import SourceError
from agent.state import AgentState
from tests.support.builders import parameter, snapshot
from tests.support.http_server import Fakes, api_for

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


@dataclass
class Sdk:
    state: AgentState
    fakes: Fakes
    url: str
    session: aiohttp.ClientSession

    async def call(
        self, operation: str, body: dict[str, Any], **extra: str
    ) -> tuple[int, Any, Any]:
        async with self.session.post(
            self.url, data=json.dumps(body), headers=headers(operation, **extra)
        ) as resp:
            return resp.status, resp.headers, json.loads(await resp.read())


@pytest.fixture
async def sdk(tmp_path: Path) -> AsyncIterator[Sdk]:
    served = snapshot(parameter("/app/a", "value a", version=2))
    async with api_for(tmp_path, served=served, route_factories=[aws_sdk.route_factory()]) as api:
        yield Sdk(api.state, api.fakes, api.client.base + "/", api.client.session)


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
    sdk.fakes.on_demand["/dyn/x"] = parameter("/dyn/x", "lazy")
    sdk.fakes.on_demand["/dyn/down"] = SourceError("GetParameter failed: timeout")
    status, _, body = await sdk.call("GetParameters", {"Names": ["/dyn/x", "/dyn/gone", "/o"]})
    assert status == 200
    assert [p["Value"] for p in body["Parameters"]] == ["lazy"]
    assert body["InvalidParameters"] == ["/dyn/gone", "/o"]
    assert sdk.fakes.on_demand_calls == ["/dyn/x", "/dyn/gone"]  # "/o" is outside the prefixes
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
