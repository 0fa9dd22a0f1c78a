"""Another version or label of a parameter the agent serves (`name:1`, `name:stable`,
`&version=1`, `&label=stable`) is fetched through the source, as SSM answers it, on the Lambda
extension route and the AWS SDK route; the answer is kept one refresh interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from tests.support.agents import ssm_config
from tests.support.http_api import metric_value, sdk_http_section, serving
from tests.support.moto import REGION

FIELDS = ("Name", "Type", "Value", "Version", "ARN", "DataType")


def seed(ssm: Any) -> None:
    ssm.put_parameter(Name="/ver/db", Value="db one", Type="SecureString")
    ssm.label_parameter_version(Name="/ver/db", ParameterVersion=1, Labels=["stable"])
    ssm.put_parameter(Name="/ver/db", Value="db two", Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name="/ver/app/url", Value="url one", Type="String")
    ssm.put_parameter(Name="/ver/app/url", Value="url two", Type="String", Overwrite=True)
    ssm.put_parameter(Name="/ver/pinned", Value="pinned one", Type="String")
    ssm.put_parameter(Name="/ver/pinned", Value="pinned two", Type="String", Overwrite=True)


def config(moto_url: str, tmp_path: Path) -> Any:
    entries: list[dict[str, Any]] = [
        {"name": "/ver/db"},
        {"path": "/ver/app"},
        {"name": "/ver/pinned", "version": 1},
    ]
    return ssm_config(moto_url, entries, tmp_path, interval="1h", http=sdk_http_section(tmp_path))


def fields(parameter: dict[str, Any]) -> dict[str, Any]:
    return {k: parameter[k] for k in FIELDS}


async def test_the_extension_route_fetches_versions_it_does_not_hold(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    seed(ssm)
    async with serving(config(moto_url, tmp_path)) as (_, client):
        asked = [
            ({"name": "/ver/db:1"}, "/ver/db:1"),
            ({"name": "/ver/db", "version": "1"}, "/ver/db:1"),
            ({"name": "/ver/db:stable"}, "/ver/db:stable"),
            ({"name": "/ver/db", "label": "stable"}, "/ver/db:stable"),
            ({"name": "/ver/app/url:1"}, "/ver/app/url:1"),
            ({"name": "/ver/pinned:2"}, "/ver/pinned:2"),
        ]
        for params, ssm_name in asked:
            reply = await client.compat(**params, withDecryption="true")
            assert reply.status == 200, (params, reply.text)
            want = ssm.get_parameter(Name=ssm_name, WithDecryption=True)["Parameter"]
            assert fields(reply.json()["Parameter"]) == fields(want), params
        # What it holds is still answered from the snapshot.
        held = await client.compat("/ver/db", withDecryption="true")
        assert held.json()["Parameter"]["Value"] == "db two"
        missing = await client.compat("/ver/db:9")
        assert missing.status == 404
        assert "/ver/db:9 was not found in the parameter source" in missing.json()["message"]


async def test_the_sdk_route_fetches_versions_it_does_not_hold_once_an_interval(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    seed(ssm)
    cfg = config(moto_url, tmp_path)
    async with (
        serving(cfg) as (_, client),
        get_session().create_client(
            "ssm", region_name=REGION, endpoint_url=f"http://{cfg.http.listen}"
        ) as app,
    ):
        for name in ("/ver/db:1", "/ver/db:stable", "/ver/app/url:1", "/ver/pinned"):
            got = await app.get_parameter(Name=name, WithDecryption=True)
            want = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
            assert fields(got["Parameter"]) == fields(want), name
            assert got["Parameter"].get("Selector") == (
                None if ":" not in name else name[name.index(":") :]
            )
        many = await app.get_parameters(
            Names=["/ver/db:stable", "/ver/db", "/ver/db:9"], WithDecryption=True
        )
        assert [p["Value"] for p in many["Parameters"]] == ["db one", "db two"]
        assert many["InvalidParameters"] == ["/ver/db:9"]

        metrics = (await client.get("/metrics", token=None)).text
        calls = metric_value(
            metrics,
            "ssm_sidecar_source_requests_total",
            operation="GetParameter",
            outcome="ok",
        )
        for _ in range(3):  # kept one interval: no more calls
            await app.get_parameter(Name="/ver/db:1", WithDecryption=True)
            await app.get_parameter(Name="/ver/app/url:1")
        metrics = (await client.get("/metrics", token=None)).text
        again = metric_value(
            metrics,
            "ssm_sidecar_source_requests_total",
            operation="GetParameter",
            outcome="ok",
        )
        assert again == calls
