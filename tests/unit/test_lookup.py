"""Finding what a request names: served, else fetched on demand under on_demand_prefixes, else a
404 that says why (a version not held, a name outside the configured set)."""

from __future__ import annotations

from agent.results import SourceError
from tests.support.builders import parameter
from tests.support.http_server import CIPHER, SECRET, Api, error_of


async def test_a_version_the_agent_does_not_hold_is_a_clear_404(api: Api) -> None:
    status, code, message = error_of(await api.client.compat("/app/db/url:2"))
    assert (status, code) == (404, "ParameterNotFound")
    assert "version 3" in message and ":2" in message and "on_demand_prefixes" in message
    status, code, message = error_of(await api.client.compat("/app/db/password", label="beta"))
    assert (status, code) == (404, "ParameterNotFound")
    assert SECRET not in message and CIPHER not in message


async def test_unknown_name_is_404_outside_the_configured_set(api: Api) -> None:
    status, code, message = error_of(await api.client.compat("/elsewhere/x"))
    assert (status, code) == (404, "ParameterNotFound")
    assert "outside the agent's configured set" in message
    assert not api.fakes.on_demand_calls


async def test_names_under_on_demand_prefixes_are_fetched(api: Api) -> None:
    api.fakes.on_demand["/dyn/a"] = parameter("/dyn/a", "lazy", version=4)
    api.fakes.on_demand["/dyn/a:2"] = parameter("/dyn/a", "older", version=2)
    api.fakes.on_demand["/dyn/broken"] = SourceError("GetParameter throttled: Throttling")
    reply = await api.client.compat("/dyn/a")
    assert reply.json()["Parameter"]["Value"] == "lazy"
    reply = await api.client.compat("/dyn/a", version="2")
    assert reply.json()["Parameter"]["Value"] == "older"
    assert reply.json()["Parameter"]["Selector"] == ":2"
    status, code, message = error_of(await api.client.compat("/dyn/missing"))
    assert (status, code) == (404, "ParameterNotFound") and "not found in the parameter" in message
    status, code, message = error_of(await api.client.compat("/dyn/broken"))
    assert (status, code) == (502, "SourceUnavailable") and "throttled" in message
    native = await api.client.get("/v1/parameters/dyn/a")
    assert native.text == "lazy"
    expected = ["/dyn/a", "/dyn/a:2", "/dyn/missing", "/dyn/broken", "/dyn/a"]
    assert api.fakes.on_demand_calls == expected
