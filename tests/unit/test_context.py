"""The serving hot path's shortcuts: renderings cached per Parameter object, and request metrics
counted in plain dicts, must answer exactly what the slow path would."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from agent.metrics import HTTP_DURATION_BUCKETS, HttpRequestMetrics, Metrics
from agent.outputs.http.context import PerParameter
from agent.snapshot import Parameter
from tests.support.http_api import metric_value

ROUTE = "/v1/parameters/{name}"


def _param(version: int, value: str = "v") -> Parameter:
    return Parameter(
        name="/app/db/url",
        key="db/url",
        type="String",
        value=value,
        version=version,
        last_modified=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_a_rendering_is_reused_only_for_the_very_object_it_was_built_from() -> None:
    built: list[Parameter] = []

    def build(p: Parameter) -> str:
        built.append(p)
        return f"{p.value}@{p.version}"

    cache = PerParameter(build)
    first = _param(1, "old")
    assert cache.get(first) == "old@1"
    assert cache.get(first) == "old@1"
    assert built == [first]
    # A refresh makes a new object even when nothing changed: rebuilt, never served stale.
    same_version_again = _param(1, "old")
    assert cache.get(same_version_again) == "old@1"
    assert cache.get(_param(2, "new")) == "new@2"
    assert len(built) == 3


def test_the_cache_is_emptied_past_its_limit() -> None:
    built: list[str] = []

    def build(p: Parameter) -> str:
        built.append(p.name)
        return p.name

    cache = PerParameter(build, limit=2)
    params = [Parameter(f"/p{i}", f"p{i}", "String", "v", 1, datetime.now(UTC)) for i in range(3)]
    for p in (params[0], params[1], params[0], params[1]):
        cache.get(p)
    assert built == ["/p0", "/p1"]  # both kept while within the limit
    cache.get(params[2])  # the third name empties the cache first
    cache.get(params[2])
    cache.get(params[0])
    assert built == ["/p0", "/p1", "/p2", "/p0"]


def test_request_metrics_bucket_like_a_prometheus_histogram() -> None:
    metrics = Metrics()
    requests = metrics.http
    assert isinstance(requests, HttpRequestMetrics)
    on_a_bound = HTTP_DURATION_BUCKETS[2]  # le is "less or equal": counted in that bucket
    for seconds in (0.0001, on_a_bound, 0.02, 99.0):
        requests.observe(ROUTE, 200, seconds)
    requests.observe(ROUTE, 404, 0.0001)
    requests.observe("unmatched", 404, 0.0001)
    text = generate_latest(metrics.registry).decode()

    def bucket(le: str) -> float:
        return metric_value(
            text, "ssm_sidecar_http_request_duration_seconds_bucket", le=le, route=ROUTE
        )

    total = "ssm_sidecar_http_requests_total"
    assert metric_value(text, total, route=ROUTE, code="200") == 4
    assert metric_value(text, total, route=ROUTE, code="404") == 1
    assert metric_value(text, total, route="unmatched", code="404") == 1
    assert bucket("0.0005") == 2
    assert bucket(repr(float(on_a_bound))) == 3
    assert bucket("0.025") == 4
    assert bucket("30.0") == 4
    assert bucket("+Inf") == 5  # one histogram per route, whatever the code
    count = "ssm_sidecar_http_request_duration_seconds_count"
    assert metric_value(text, count, route=ROUTE) == 5
    total_seconds = metric_value(text, "ssm_sidecar_http_request_duration_seconds_sum", route=ROUTE)
    assert abs(total_seconds - (0.0001 * 2 + on_a_bound + 0.02 + 99.0)) < 1e-9
