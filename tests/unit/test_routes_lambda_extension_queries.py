"""The Lambda-extension route parses each distinct query string once: a kept parse must never
answer an old value, nor turn a refused query into an accepted one, nor grow without bound."""

from __future__ import annotations

from agent.outputs.http.routes import lambda_extension
from tests.support.builders import parameter, snapshot
from tests.support.http_server import STANDARD, Api, error_of


async def test_the_same_query_answers_the_new_version_after_a_swap(api: Api) -> None:
    first = await api.client.compat("/app/db/url")
    assert first.json()["Parameter"]["Value"] == "postgres://db/app"
    api.state.snapshot = snapshot(
        *STANDARD[1:], parameter("/app/db/url", "postgres://db/v4", version=4)
    )
    again = await api.client.compat("/app/db/url")
    assert again.json()["Parameter"]["Value"] == "postgres://db/v4"
    assert again.json()["Parameter"]["Version"] == 4


async def test_a_refused_query_is_refused_every_time(api: Api) -> None:
    for _ in range(2):
        reply = await api.client.get(
            "/systemsmanager/parameters/get", params={"name": "/app/db/url", "withDecryption": "x"}
        )
        assert error_of(reply)[:2] == (400, "ValidationException")


async def test_many_distinct_queries_are_answered_and_the_kept_parses_stay_bounded(
    api: Api,
) -> None:
    for n in range(lambda_extension.QUERIES_KEPT + 10):
        reply = await api.client.compat(f"/dyn/absent-{n}")
        assert reply.status in (404, 502)
    reply = await api.client.compat("/app/db/url")
    assert reply.json()["Parameter"]["Value"] == "postgres://db/app"
