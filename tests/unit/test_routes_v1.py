"""The /v1 routes: raw values with version headers, ETags and long-polls, listings, refresh."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dotenv import dotenv_values

from agent.results import CycleResult, ParameterError
from agent.snapshot import Change, VersionChange
from tests.support.builders import parameter, snapshot
from tests.support.http_server import SECRET, STANDARD, Api, api_for, error_of
from tests.support.waiting import async_wait_until


async def test_native_value_is_raw_text_with_version_headers(api: Api) -> None:
    reply = await api.client.get("/v1/parameters/app/db/password")
    assert reply.status == 200
    assert reply.body == SECRET.encode()
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert reply.headers["ETag"] == '"7"'
    assert reply.headers["X-Parameter-Version"] == "7"
    assert reply.headers["Last-Modified"] == "Wed, 04 Mar 2026 05:06:07 GMT"
    missing = await api.client.get("/v1/parameters/not/here")
    assert error_of(missing)[:2] == (404, "ParameterNotFound")


async def test_if_none_match_gives_304(api: Api) -> None:
    path = "/v1/parameters/app/db/url"
    for tag in ('"3"', 'W/"3"', '"1", "3"', "*"):
        reply = await api.client.get(path, headers={"If-None-Match": tag})
        assert reply.status == 304, tag
        assert reply.body == b""
        assert reply.headers["ETag"] == '"3"'
    assert (await api.client.get(path, headers={"If-None-Match": '"2"'})).status == 200


async def test_long_poll_returns_the_new_version_on_swap(api: Api) -> None:
    path = "/v1/parameters/app/db/url"
    poll = asyncio.create_task(
        api.client.get(path, headers={"If-None-Match": '"3"'}, params={"wait": "30s"})
    )
    await asyncio.sleep(0.05)  # let the request reach its wait; correctness does not depend on it
    assert not poll.done()
    # An unrelated swap does not end the poll.
    unrelated = [p for p in STANDARD if p.name != "/app/name"] + [
        parameter("/app/name", "x", version=2)
    ]
    await api.state.swap(snapshot(*unrelated, generation=2))
    await asyncio.sleep(0.05)
    assert not poll.done()
    changed = [p for p in unrelated if p.name != "/app/db/url"]
    changed.append(parameter("/app/db/url", "postgres://db/new", version=4))
    started = asyncio.get_running_loop().time()
    await api.state.swap(snapshot(*changed, generation=3))
    reply = await asyncio.wait_for(poll, 5)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert reply.status == 200
    assert reply.text == "postgres://db/new"
    assert reply.headers["ETag"] == '"4"'


async def test_long_poll_gives_304_at_the_deadline(api: Api) -> None:
    started = asyncio.get_running_loop().time()
    reply = await api.client.get(
        "/v1/parameters/app/db/url", headers={"If-None-Match": '"3"'}, params={"wait": "300ms"}
    )
    elapsed = asyncio.get_running_loop().time() - started
    assert reply.status == 304
    assert 0.3 <= elapsed < 2.0


async def test_long_poll_ends_when_the_server_stops(tmp_path: Path) -> None:
    async with api_for(tmp_path) as api:
        poll = asyncio.create_task(
            api.client.get(
                "/v1/parameters/app/db/url", headers={"If-None-Match": '"3"'}, params={"wait": "5m"}
            )
        )
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await api.server.stop()
        reply = await asyncio.wait_for(poll, 5)
        assert reply.status == 304
        assert asyncio.get_running_loop().time() - started < 1.5


async def test_bad_wait_is_a_validation_error(api: Api) -> None:
    reply = await api.client.get(
        "/v1/parameters/app/db/url", headers={"If-None-Match": '"3"'}, params={"wait": "soon"}
    )
    assert error_of(reply)[:2] == (400, "ValidationException")


async def test_listing_as_json_and_dotenv(api: Api) -> None:
    reply = await api.client.get("/v1/parameters", params={"path": "/app"})
    assert reply.json() == {
        "DB_PASSWORD": SECRET,
        "DB_URL": "postgres://db/app",
        "NAME": STANDARD[2].value,
    }
    flat = await api.client.get("/v1/parameters", params={"path": "/app", "recursive": "false"})
    assert flat.json() == {"NAME": STANDARD[2].value}
    sub = await api.client.get("/v1/parameters", params={"path": "/app/db"})
    assert sub.json() == {"DB_PASSWORD": SECRET, "DB_URL": "postgres://db/app"}
    dotenv = await api.client.get("/v1/parameters", params={"path": "/app", "format": "dotenv"})
    assert dotenv.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert dict(dotenv_values(stream=io.StringIO(dotenv.text), interpolate=False)) == {
        "DB_PASSWORD": SECRET,
        "DB_URL": "postgres://db/app",
        "NAME": STANDARD[2].value,
    }
    for params in ({"path": "/app", "format": "xml"}, {"path": "app"}, {}):
        assert error_of(await api.client.get("/v1/parameters", params=params))[0] == 400


async def test_a_listing_whose_env_names_collide_is_refused_naming_keys(api: Api) -> None:
    await api.state.swap(snapshot(parameter("/c/a-b", SECRET), parameter("/c/a_b", "x")))
    reply = await api.client.get("/v1/parameters", params={"path": "/c", "format": "dotenv"})
    status, code, message = error_of(reply)
    assert (status, code) == (400, "ValidationException")
    assert "c/a-b" in message and "c/a_b" in message and SECRET not in message


async def test_refresh_returns_names_and_versions_only(api: Api) -> None:
    change = Change(updated=(VersionChange("/app/db/password", 7, 8),))
    errors = (ParameterError("/app/gone", "ParameterNotFound", "not found"),)
    api.fakes.refresh_result = CycleResult(True, True, change, errors)
    reply = await api.client.post("/v1/refresh")
    assert reply.status == 200
    assert reply.json() == {
        "ok": True,
        "complete": True,
        "added": [],
        "updated": [{"name": "/app/db/password", "old_version": 7, "new_version": 8}],
        "removed": [],
        "errors": [{"name": "/app/gone", "code": "ParameterNotFound"}],
    }
    api.fakes.refresh_result = CycleResult(False, False, Change(), reason="GetParameters throttled")
    status, code, message = error_of(await api.client.post("/v1/refresh"))
    assert (status, code) == (502, "SourceUnavailable") and "throttled" in message


async def test_concurrent_refresh_requests_share_one_cycle(api: Api) -> None:
    api.fakes.refresh_gate = asyncio.Event()
    posts = [asyncio.create_task(api.client.post("/v1/refresh")) for _ in range(3)]
    await async_wait_until(lambda: api.fakes.refresh_calls == 1, 5, what="refresh started")
    await asyncio.sleep(0.05)
    api.fakes.refresh_gate.set()
    replies = await asyncio.gather(*posts)
    assert [r.status for r in replies] == [200, 200, 200]
    assert api.fakes.refresh_calls == 1
    assert (await api.client.post("/v1/refresh")).status == 200
    assert api.fakes.refresh_calls == 2


async def test_dates_in_any_timezone_are_rendered_in_utc(api: Api) -> None:
    local = datetime(2026, 3, 4, 7, 6, 7, 5000, tzinfo=timezone(timedelta(hours=2)))
    await api.state.swap(snapshot(parameter("/tz", last_modified=local)))
    native = await api.client.get("/v1/parameters/tz")
    assert native.headers["Last-Modified"] == "Wed, 04 Mar 2026 05:06:07 GMT"
    compat = await api.client.compat("/tz")
    assert compat.json()["Parameter"]["LastModifiedDate"] == "2026-03-04T05:06:07.005Z"
