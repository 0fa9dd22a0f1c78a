"""Metrics: the per-request HTTP series are counted in plain dicts and must read exactly like a
prometheus Counter and Histogram."""

from __future__ import annotations

from prometheus_client import generate_latest

from agent.metrics import HTTP_DURATION_BUCKETS, HttpRequestMetrics, Metrics
from tests.support.http_api import metric_value

ROUTE = "/v1/parameters/{name}"


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
