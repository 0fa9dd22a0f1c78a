"""The Secrets Manager protocol from a snapshot (pure), and `POST /` dispatching to it only when
http.aws_protocols has "secretsmanager"."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest

from agent.config import HttpConfig
from agent.metrics import Metrics
from agent.outputs.http.routes import aws_sdk
from agent.outputs.http.secretsmanager_protocol import answer, render_value
from agent.outputs.http.server import HttpServer
from agent.results import CycleResult
from agent.snapshot import Change, Parameter, Secret
from agent.state import AgentState
from tests.support.builders import snapshot
from tests.support.moto import free_port

T = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
VALUE = "hunter2-very-secret"


def secret(name: str, value: str = VALUE, **kw: Any) -> Secret:
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"
    meta = {"ARN": arn, "Name": name, "Description": f"about {name}", "Tags": kw.pop("tags", [])}
    return Secret(
        name=name,
        key=name,
        arn=arn,
        version_id=kw.pop("version_id", "a" * 32),
        version_stages=kw.pop("stages", ("AWSCURRENT",)),
        created=T,
        string=value,
        metadata=MappingProxyType({**meta, "VersionIdsToStages": {"a" * 32: ["AWSCURRENT"]}}),
        **kw,
    )


SNAP = snapshot(
    secret("prod/db"),
    secret("prod/api", tags=[{"Key": "team", "Value": "core"}]),
    secret("dev/db", "dev"),
    secret(
        "prod/db",
        "old",
        version_id="b" * 32,
        stages=("AWSPREVIOUS",),
        selector="stage:AWSPREVIOUS",
    ),
)


def test_get_secret_value_shape() -> None:
    reply = answer(SNAP, "GetSecretValue", {"SecretId": "prod/db"})
    assert reply.status == 200
    assert reply.body == {
        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
        "Name": "prod/db",
        "VersionId": "a" * 32,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1767323045.678,
        "SecretString": VALUE,
    }
    binary = Secret("b", "b", "arn:b", "c" * 32, ("AWSCURRENT",), T, None, b"\x00\xff")
    assert render_value(binary)["SecretBinary"] == "AP8="
    old = answer(SNAP, "GetSecretValue", {"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"})
    assert old.body["SecretString"] == "old"


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"SecretId": "nope"}, "ResourceNotFoundException", "can't find the specified secret."),
        (
            {"SecretId": "prod/db", "VersionStage": "AWSPENDING"},
            "ResourceNotFoundException",
            "staging label: AWSPENDING",
        ),
        (
            {"SecretId": "prod/db", "VersionId": "f" * 32},
            "ResourceNotFoundException",
            "VersionId: " + "f" * 32,
        ),
        ({}, "ValidationException", "secretId"),
        ({"SecretId": "prod/db", "VersionId": "short"}, "ValidationException", "length"),
        ({"SecretId": 7}, "SerializationException", "SecretId"),
    ],
)
def test_get_secret_value_errors(body: dict[str, Any], code: str, words: str) -> None:
    reply = answer(SNAP, "GetSecretValue", body)
    assert (reply.status, reply.body["__type"]) == (400, code)
    assert words in reply.body["message"] and VALUE not in json.dumps(reply.body)


def test_writes_refused_others_unknown() -> None:
    put = answer(SNAP, "PutSecretValue", {"SecretId": "prod/db", "SecretString": "x"})
    assert (put.body["__type"], "read-only" in put.body["message"]) == (
        "AccessDeniedException",
        True,
    )
    listing = answer(SNAP, "ListSecrets", {})
    assert listing.body["__type"] == "UnknownOperationException"
    assert answer(SNAP, "GetSecretValue", [1]).body["__type"] == "SerializationException"


def test_batch_by_ids_reports_each_missing_one() -> None:
    reply = answer(SNAP, "BatchGetSecretValue", {"SecretIdList": ["prod/db", "nope", "dev/db"]})
    assert [v["Name"] for v in reply.body["SecretValues"]] == ["prod/db", "dev/db"]
    assert reply.body["Errors"] == [
        {
            "SecretId": "nope",
            "ErrorCode": "ResourceNotFoundException",
            "Message": "Secrets Manager can't find the specified secret.",
        }
    ]
    too_many = answer(SNAP, "BatchGetSecretValue", {"SecretIdList": ["x"] * 21})
    assert too_many.body["__type"] == "ValidationException"
    both = answer(SNAP, "BatchGetSecretValue", {"SecretIdList": ["x"], "Filters": []})
    assert both.body["__type"] == "InvalidParameterException"


def test_batch_by_filters_pages_by_name() -> None:
    body: dict[str, Any] = {"Filters": [{"Key": "name", "Values": ["prod/"]}], "MaxResults": 1}
    first = answer(SNAP, "BatchGetSecretValue", body).body
    assert [v["Name"] for v in first["SecretValues"]] == ["prod/api"]
    second = answer(SNAP, "BatchGetSecretValue", {**body, "NextToken": first["NextToken"]}).body
    assert [v["Name"] for v in second["SecretValues"]] == ["prod/db"] and "NextToken" not in second
    by_tag = answer(
        SNAP, "BatchGetSecretValue", {"Filters": [{"Key": "tag-value", "Values": ["core"]}]}
    ).body
    assert [v["Name"] for v in by_tag["SecretValues"]] == ["prod/api"]
    negated = answer(
        SNAP, "BatchGetSecretValue", {"Filters": [{"Key": "name", "Values": ["!prod/"]}]}
    ).body
    assert [v["Name"] for v in negated["SecretValues"]] == ["dev/db"]
    bad = answer(SNAP, "BatchGetSecretValue", {"Filters": [{"Key": "colour", "Values": ["x"]}]})
    assert bad.body["__type"] == "ValidationException"
    token = answer(SNAP, "BatchGetSecretValue", {**body, "NextToken": "garbage"})
    assert token.body["__type"] == "InvalidNextTokenException"


def test_describe_secret_from_metadata() -> None:
    reply = answer(SNAP, "DescribeSecret", {"SecretId": "prod/api"})
    assert reply.body["Description"] == "about prod/api"
    assert reply.body["VersionIdsToStages"] == {"a" * 32: ["AWSCURRENT"]}
    assert VALUE not in json.dumps(reply.body)
    assert answer(SNAP, "DescribeSecret", {"SecretId": "x"}).body["__type"] == (
        "ResourceNotFoundException"
    )


AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/secretsmanager/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "ab" * 32
)


async def no_refresh() -> CycleResult:
    return CycleResult(True, True, Change())


async def nothing(name: str) -> Parameter | None:
    return None


@pytest.fixture(params=[False, True], ids=["off", "on"])
async def server(request: Any, tmp_path: Path) -> AsyncIterator[tuple[str, bool]]:
    enabled: bool = request.param
    cfg = HttpConfig(listen=f"127.0.0.1:{free_port()}", token_file=tmp_path / "token")
    state = AgentState()
    state.snapshot, state.ready = SNAP, True
    protocols = ("secretsmanager",) if enabled else ()
    http = HttpServer(
        cfg,
        state,
        Metrics(),
        refresh=no_refresh,
        on_demand=nothing,
        interval=30.0,
        route_factories=[aws_sdk.route_factory((), protocols)],
    )
    await http.start()
    try:
        yield f"http://{cfg.listen}/", enabled
    finally:
        await http.stop()


async def test_post_dispatches_only_when_enabled(server: tuple[str, bool]) -> None:
    url, enabled = server
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.GetSecretValue",
        "Authorization": AUTH,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps({"SecretId": "prod/db"}), headers=headers) as resp,
    ):
        body = json.loads(await resp.read())
        assert resp.headers["Content-Type"] == "application/x-amz-json-1.1"
    if enabled:
        assert resp.status == 200 and body["SecretString"] == VALUE
    else:
        assert (resp.status, body["__type"]) == (400, "UnknownOperationException")
        assert "http.aws_protocols" in body["message"] and VALUE not in json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data="{}", headers={**headers, "Authorization": "nope"}) as refused,
    ):
        assert refused.status == 403  # the SDK guard runs first, enabled or not
