"""Secrets over the token routes, compared with moto's Secrets Manager field by field.

Acceptance 1: string and binary secrets, by name, ARN (full and partial) and prefix, with
versionStage/versionId: `/secretsmanager/get` equals GetSecretValue. Where moto differs from
AWS it is compared separately: moto's CreatedDate is whole seconds (the agent passes on what
the source returned) and moto answers ResourceNotFoundException with HTTP 404 where AWS (and
so the Secrets Manager Agent) answers 400.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from agent.get_command import Target, fetch_value
from tests.support.http_api import ApiClient, http_section, serving
from tests.support.secrets import moto_wire, secrets_config, seed_db_secret

FIELDS = ("ARN", "Name", "VersionId", "VersionStages", "SecretString", "SecretBinary")


def seed(sm: Any) -> dict[str, Any]:
    fields = seed_db_secret(sm)
    first = next(iter(sm.describe_secret(SecretId="prod/db")["VersionIdsToStages"]))
    sm.put_secret_value(SecretId="prod/db", SecretString=json.dumps({**fields, "password": "r2"}))
    cert = sm.create_secret(Name="prod/cert", SecretBinary=b"\x00\x01\xfe\xffDER")
    sm.create_secret(Name="team/a", SecretString="alpha")
    sm.create_secret(Name="team/b", SecretString="beta")
    return {"first": first, "cert_arn": cert["ARN"]}


def entries(seeded: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"id": "prod/db", "alias": "db.json"},
        {"id": "prod/db", "version_stage": "AWSPREVIOUS", "alias": "db_previous"},
        {"id": "prod/db", "version_id": seeded["first"], "alias": "db_first"},
        {"id": seeded["cert_arn"], "alias": "cert"},
        {"prefix": "team/"},
    ]


async def get(client: ApiClient, **query: str) -> tuple[int, Any]:
    reply = await client.get("/secretsmanager/get", params=query)
    return reply.status, reply.json()


def assert_same(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    for field in FIELDS:
        assert mine.get(field) == theirs.get(field), field
    assert float(mine["CreatedDate"]) == float(theirs["CreatedDate"])
    assert set(mine) == set(theirs), (set(mine), set(theirs))


async def test_secretsmanager_get_equals_get_secret_value(
    secretsmanager: Any, moto_url: str, tmp_path: Path
) -> None:
    seeded = seed(secretsmanager)
    arn = secretsmanager.describe_secret(SecretId="prod/db")["ARN"]
    cfg = secrets_config(moto_url, entries(seeded), tmp_path, http=http_section(tmp_path))
    asks = [
        {"SecretId": "prod/db"},
        {"SecretId": arn},
        {"SecretId": arn[:-7]},  # a partial ARN (without the random suffix)
        {"SecretId": "prod/db", "VersionStage": "AWSCURRENT"},
        {"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"},
        {"SecretId": "prod/db", "VersionId": seeded["first"]},
        {"SecretId": "prod/db", "VersionId": seeded["first"], "VersionStage": "AWSPREVIOUS"},
        {"SecretId": seeded["cert_arn"]},
        {"SecretId": "prod/cert"},
        {"SecretId": "team/a"},
        {"SecretId": "team/b"},
    ]
    async with serving(cfg) as (_, client):
        for ask in asks:
            status, theirs = moto_wire(moto_url, "GetSecretValue", ask)
            query = {k[0].lower() + k[1:]: v for k, v in ask.items()}
            mine_status, mine = await get(client, **query)
            assert (mine_status, status) == (200, 200), (ask, mine)
            assert_same(mine, theirs)
        _, cert = await get(client, secretId="prod/cert")
        assert base64.b64decode(cert["SecretBinary"]) == b"\x00\x01\xfe\xffDER"

        # Errors: Secrets Manager's __type; 400 as AWS answers (moto says 404).
        for ask in (
            {"SecretId": "prod/nope"},
            {"SecretId": "prod/db", "VersionStage": "AWSPENDING"},
            {"SecretId": "prod/db", "VersionId": "f" * 32},
        ):
            status, theirs = moto_wire(moto_url, "GetSecretValue", ask)
            query = {k[0].lower() + k[1:]: v for k, v in ask.items()}
            mine_status, mine = await get(client, **query)
            assert mine_status == 400 and status in (400, 404)
            assert mine["__type"] == theirs["__type"] == "ResourceNotFoundException", mine
            assert "r2" not in json.dumps(mine)
        status, body = await get(client, secretId="prod/db", bogus="1")
        assert (status, body["__type"]) == (400, "ValidationException")
        assert "bogus" in body["message"]
        status, body = await get(client)
        assert (status, body["__type"]) == (400, "ValidationException")
        reply = await client.get("/secretsmanager/get", params={"secretId": "prod/db"}, token=None)
        assert reply.status == 401


async def test_raw_value_etag_long_poll_listing_and_get_command(
    secretsmanager: Any, moto_url: str, tmp_path: Path
) -> None:
    seeded = seed(secretsmanager)
    cfg = secrets_config(moto_url, entries(seeded), tmp_path, http=http_section(tmp_path))
    async with serving(cfg) as (agent, client):
        current = agent.state.snapshot.secrets["prod/db"]
        reply = await client.get("/v1/secrets/prod/db")
        assert reply.status == 200 and json.loads(reply.body)["password"] == "r2"
        assert reply.headers["ETag"] == f'"{current.version_id}"'
        assert reply.headers["Content-Type"].startswith("text/plain")
        cert = await client.get(f"/v1/secrets/{seeded['cert_arn']}")
        assert cert.body == b"\x00\x01\xfe\xffDER"
        assert cert.headers["Content-Type"] == "application/octet-stream"
        previous = await client.get("/v1/secrets/prod/db", params={"versionStage": "AWSPREVIOUS"})
        assert json.loads(previous.body)["password"] != "r2"
        missing = await client.get("/v1/secrets/prod/nope")
        assert missing.status == 404 and missing.json()["__type"] == "ResourceNotFoundException"

        etag = {"If-None-Match": reply.headers["ETag"]}
        assert (await client.get("/v1/secrets/prod/db", headers=etag)).status == 304

        async def rotate_then_refresh() -> None:
            await asyncio.sleep(0.2)
            secretsmanager.put_secret_value(SecretId="prod/db", SecretString='{"password": "r3"}')
            await client.post("/v1/refresh")

        waiting = asyncio.ensure_future(
            client.get("/v1/secrets/prod/db", headers=etag, params={"wait": "20s"})
        )
        await rotate_then_refresh()
        changed = await asyncio.wait_for(waiting, 20)
        assert changed.status == 200 and changed.body == b'{"password": "r3"}'
        assert changed.headers["ETag"] != reply.headers["ETag"]

        listing = await client.get("/v1/secrets", params={"prefix": "team/", "format": "dotenv"})
        assert listing.text == 'TEAM_A="alpha"\nTEAM_B="beta"\n'
        everything = (await client.get("/v1/secrets")).json()
        assert everything["CERT"] == base64.b64encode(b"\x00\x01\xfe\xffDER").decode()
        assert set(everything) == {"DB_JSON", "CERT", "TEAM_A", "TEAM_B"}

        # refreshNow=true (the Secrets Manager Agent's parameter): a cycle first, then the answer.
        secretsmanager.put_secret_value(SecretId="team/a", SecretString="alpha-2")
        status, fresh = await get(client, secretId="team/a", refreshNow="true")
        assert (status, fresh["SecretString"]) == (200, "alpha-2")

        target = Target(f"http://{cfg.http.listen}", cfg.http.token_file)
        assert await fetch_value("team/a", target, secret=True) == b"alpha-2"
