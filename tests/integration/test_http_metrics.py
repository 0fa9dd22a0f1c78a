"""/metrics after a scenario: reads, a throttled cycle and a change move the counters exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.agents import ssm_config
from tests.support.fault_proxy import FaultProxy
from tests.support.http_api import (
    http_section,
    metric_value,
    serving,
)

PLAIN = "plain-metric-value-1"
SECRET = "secret-metric-value-2"
NEW_SECRET = "secret-metric-value-3"


async def test_counters_after_reads_a_throttled_cycle_and_a_change(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/met/plain", Value=PLAIN, Type="String")
    ssm.put_parameter(Name="/met/secret", Value=SECRET, Type="SecureString")
    # A 1h interval: the only cycles are the first load and the two this test asks for.
    cfg = ssm_config(
        fault_proxy.url, [{"path": "/met"}], tmp_path, interval="1h", http=http_section(tmp_path)
    )
    async with serving(cfg) as (_, client):
        before = (await client.get("/metrics", token=None)).text
        proxy_before = fault_proxy.count("GetParametersByPath")

        for _ in range(3):
            assert (await client.get("/v1/parameters/met/plain")).text == PLAIN
        for _ in range(2):
            reply = await client.compat("/met/secret", withDecryption="true")
            assert reply.json()["Parameter"]["Value"] == SECRET
        assert (await client.get("/v1/parameters/met/nothing")).status == 404

        fault_proxy.add_fault("GetParametersByPath", "throttle", times=1)
        throttled = await client.post("/v1/refresh")
        assert throttled.status == 502
        assert "throttled" in throttled.json()["message"]
        assert (await client.get("/v1/parameters/met/secret")).text == SECRET  # still served

        await asyncio.to_thread(
            ssm.put_parameter,
            Name="/met/secret",
            Value=NEW_SECRET,
            Type="SecureString",
            Overwrite=True,
        )
        changed = await client.post("/v1/refresh")
        assert changed.json()["updated"] == [
            {"name": "/met/secret", "old_version": 1, "new_version": 2}
        ]

        after = (await client.get("/metrics", token=None)).text

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    requests = "ssm_sidecar_http_requests_total"
    value_route = "/v1/parameters/{name}"
    assert delta(requests, route=value_route, code="200") == 4
    assert delta(requests, route=value_route, code="404") == 1
    assert delta(requests, route="/systemsmanager/parameters/get", code="200") == 2
    assert delta(requests, route="/v1/refresh", code="502") == 1
    assert delta(requests, route="/v1/refresh", code="200") == 1
    assert delta("ssm_sidecar_http_request_duration_seconds_count", route=value_route) == 5

    source = "ssm_sidecar_source_requests_total"
    assert delta(source, operation="GetParametersByPath", outcome="throttled") == 1
    assert delta(source, operation="GetParametersByPath", outcome="ok") == 1
    assert delta(source, operation="GetParameters", outcome="ok") == 1  # decrypt the new version
    assert delta("ssm_sidecar_source_throttled_total") == 1
    assert delta("ssm_sidecar_parameter_changes_total", kind="updated") == 1
    assert fault_proxy.count("GetParametersByPath") - proxy_before == 2

    assert metric_value(after, "ssm_sidecar_ready") == 1
    assert metric_value(after, "ssm_sidecar_parameters") == 2
    for value in (PLAIN, SECRET, NEW_SECRET):
        assert value not in after
