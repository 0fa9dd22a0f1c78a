"""A client written for the AWS Parameters and Secrets Lambda Extension works against the agent."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from tests.support.agents import ssm_config
from tests.support.http_api import (
    http_section,
    serving,
)
from tests.support.moto import REGION

RFC3339_MS_Z = "%Y-%m-%dT%H:%M:%S.%fZ"


def lambda_extension_client(port: int, token: str, name: str) -> str:
    """Exactly what the AWS documentation shows a Lambda function doing, nothing more."""
    url = (
        f"http://localhost:{port}/systemsmanager/parameters/get?name="
        + urllib.parse.quote(name, safe="")
        + "&withDecryption=true"
    )
    req = urllib.request.Request(url, headers={"X-Aws-Parameters-Secrets-Token": token})
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback http)
        return str(json.loads(resp.read())["Parameter"]["Value"])


async def test_a_lambda_extension_client_reads_parameter_value(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/svc/db/password", Value="pa55-word!", Type="SecureString")
    ssm.put_parameter(Name="/svc/greeting", Value="hello world", Type="String")
    cfg = ssm_config(moto_url, [{"path": "/svc"}], tmp_path, http=http_section(tmp_path))
    async with serving(cfg) as (_, client):
        port = int(cfg.http.listen.rpartition(":")[2])
        for name, value in (("/svc/db/password", "pa55-word!"), ("/svc/greeting", "hello world")):
            got = await asyncio.to_thread(lambda_extension_client, port, client.token, name)
            assert got == value


async def sdk_get_parameter(moto_url: str, **kwargs: Any) -> dict[str, Any]:
    async with get_session().create_client("ssm", region_name=REGION, endpoint_url=moto_url) as sdk:
        result: dict[str, Any] = (await sdk.get_parameter(**kwargs))["Parameter"]
        return result


def assert_same_as_sdk(ours: dict[str, Any], sdk: dict[str, Any]) -> None:
    for field in ("Name", "Type", "Value", "Version", "ARN", "DataType"):
        assert ours[field] == sdk[field], field
    modified: datetime = sdk["LastModifiedDate"]
    parsed = datetime.strptime(ours["LastModifiedDate"], RFC3339_MS_Z).replace(
        tzinfo=modified.tzinfo
    )
    assert len(ours["LastModifiedDate"]) == len("2026-01-01T00:00:00.000Z")
    assert parsed == modified.replace(microsecond=modified.microsecond // 1000 * 1000)


async def test_fields_match_what_aiobotocore_gets_from_ssm(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    for i in range(1, 4):
        ssm.put_parameter(Name="/cmp/plain", Value=f"plain v{i}", Type="String", Overwrite=True)
    ssm.put_parameter(Name="/cmp/list", Value="a,b,c", Type="StringList")
    ssm.put_parameter(Name="/cmp/secret", Value="top secret", Type="SecureString")
    cfg = ssm_config(moto_url, [{"path": "/cmp"}], tmp_path, http=http_section(tmp_path))
    async with serving(cfg) as (_, client):
        cases: list[tuple[dict[str, str], dict[str, Any]]] = [
            ({"name": "/cmp/plain"}, {"Name": "/cmp/plain"}),
            ({"name": "/cmp/list"}, {"Name": "/cmp/list"}),
            (
                {"name": "/cmp/secret", "withDecryption": "true"},
                {"Name": "/cmp/secret", "WithDecryption": True},
            ),
            # Without decryption both answer the stored form (moto: "kms:<key>:<plaintext>").
            ({"name": "/cmp/secret"}, {"Name": "/cmp/secret", "WithDecryption": False}),
        ]
        for query, sdk_args in cases:
            reply = await client.get("/systemsmanager/parameters/get", params=query)
            assert reply.status == 200, reply.text
            body = reply.json()
            assert set(body) == {"Parameter", "ResultMetadata"}
            assert body["Parameter"]["Selector"] is None
            assert body["Parameter"]["SourceResult"] is None
            assert_same_as_sdk(body["Parameter"], await sdk_get_parameter(moto_url, **sdk_args))

        # A version selector: same fields, and the Selector real SSM returns (moto omits it).
        sdk = await sdk_get_parameter(moto_url, Name="/cmp/plain:3")
        for query in ({"name": "/cmp/plain:3"}, {"name": "/cmp/plain", "version": "3"}):
            reply = await client.get("/systemsmanager/parameters/get", params=query)
            ours = reply.json()["Parameter"]
            assert_same_as_sdk(ours, sdk)
            assert ours["Selector"] == ":3"
        assert sdk.get("Selector") in (None, ":3")

        # Version 2 exists in SSM while the agent serves version 3: fetched, as SSM answers it.
        reply = await client.compat("/cmp/plain:2")
        assert reply.status == 200
        assert reply.json()["Parameter"]["Version"] == 2


async def test_on_demand_names_come_from_ssm_once_per_interval(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/cfg/a", Value="configured", Type="String")
    ssm.put_parameter(Name="/lazy/x", Value="lazy v1", Type="SecureString")
    ssm.put_parameter(Name="/lazy/x", Value="lazy v2", Type="SecureString", Overwrite=True)
    http = http_section(tmp_path, on_demand_prefixes=["/lazy"])
    cfg = ssm_config(moto_url, [{"path": "/cfg"}], tmp_path, interval="1h", http=http)
    async with serving(cfg) as (agent, client):
        calls_before = agent.metrics.source_requests.labels("GetParameter", "ok")._value.get()
        replies = await asyncio.gather(
            *(client.compat("/lazy/x", withDecryption="true") for _ in range(5))
        )
        assert {r.json()["Parameter"]["Value"] for r in replies} == {"lazy v2"}
        again = await client.get("/v1/parameters/lazy/x")
        assert again.text == "lazy v2" and again.headers["ETag"] == '"2"'
        calls = agent.metrics.source_requests.labels("GetParameter", "ok")._value.get()
        # One fetch for all six reads: without, then with decryption (a SecureString).
        assert calls - calls_before == 2

        older = await client.compat("/lazy/x:1", withDecryption="true")
        assert older.json()["Parameter"]["Value"] == "lazy v1"
        assert older.json()["Parameter"]["Selector"] == ":1"
        missing = await client.compat("/lazy/nothing")
        assert missing.status == 404
        assert "not found in the parameter source" in missing.json()["message"]
        outside = await client.compat("/elsewhere/x")
        assert outside.status == 404
        assert "outside the agent's configured set" in outside.json()["message"]
