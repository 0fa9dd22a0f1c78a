"""The Lambda-extension route (GET /systemsmanager/parameters/get): its shape, decryption,
selectors, ARNs and argument errors, over a real server with an in-memory state."""

from __future__ import annotations

import pytest

from tests.support.http_server import CIPHER, RFC3339_MS, SECRET, Api, error_of


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
