"""Per-route request series (agent.metrics.RouteSeries): a route the Guard wrapped shows no
series until it has answered, and each route's counts stay its own."""

from __future__ import annotations

from prometheus_client import generate_latest

from agent.metrics import Metrics
from tests.support.http_api import metric_value


def test_a_route_shows_no_series_until_it_has_answered() -> None:
    metrics = Metrics()
    metrics.http.series("/never")  # what the Guard does for every route it wraps
    add = metrics.http.series("/v1/refresh").add
    add(200, 0.001)
    add(502, 0.002)
    metrics.http.observe("/v1/refresh", 200, 0.003)
    text = generate_latest(metrics.registry).decode()
    assert 'route="/never"' not in text
    total = "ssm_sidecar_http_requests_total"
    assert metric_value(text, total, route="/v1/refresh", code="200") == 2
    assert metric_value(text, total, route="/v1/refresh", code="502") == 1
    count = "ssm_sidecar_http_request_duration_seconds_count"
    assert metric_value(text, count, route="/v1/refresh") == 3
