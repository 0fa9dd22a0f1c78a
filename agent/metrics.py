"""Prometheus metrics (prefix ssm_sidecar_). Labels carry names and codes, never values."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

HTTP_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    30,
)


class RouteSeries:
    """One route's request counts (by code) and duration histogram, in plain Python objects."""

    __slots__ = ("_bounds", "buckets", "codes", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(bounds) + 1)  # one count per bound, then +Inf
        self.total = 0.0

    def add(self, code: int, seconds: float) -> None:
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        self.buckets[bisect_left(self._bounds, seconds)] += 1  # first bound >= seconds: its `le`
        self.total += seconds


class HttpRequestMetrics(Collector):
    """`http_requests_total{route,code}` and `http_request_duration_seconds{route}`.

    Counting runs once per HTTP request, so it only updates plain dicts and lists: the API's
    Guard holds each route's `RouteSeries` and calls its `add` (~0.3 us); a prometheus_client
    Counter.inc + Histogram.observe pair costs ~3 us there (locks, a bucket scan in Python).
    The series are built when the registry is collected; a route appears once it has answered.
    Not thread-safe for writers: only the event loop observes.
    """

    def __init__(self, prefix: str, buckets: Sequence[float] = HTTP_DURATION_BUCKETS) -> None:
        self._prefix = prefix
        self._bounds = tuple(sorted(buckets))
        self._routes: dict[str, RouteSeries] = {}

    def series(self, route: str) -> RouteSeries:
        """`route`'s series, made on first use (and kept: routes are a fixed set of labels)."""
        found = self._routes.get(route)
        if found is None:
            found = self._routes[route] = RouteSeries(self._bounds)
        return found

    def observe(self, route: str, code: int, seconds: float) -> None:
        self.series(route).add(code, seconds)

    def collect(self) -> Iterator[Metric]:
        answered = sorted(
            ((r, s) for r, s in list(self._routes.items()) if s.codes), key=lambda rs: rs[0]
        )
        requests = CounterMetricFamily(
            self._prefix + "http_requests", "HTTP requests answered", labels=["route", "code"]
        )
        for route, series in answered:
            for code, n in sorted(list(series.codes.items())):
                requests.add_metric([route, str(code)], n)
        yield requests
        duration = HistogramMetricFamily(
            self._prefix + "http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels=["route"],
        )
        edges = [repr(float(b)) for b in self._bounds] + ["+Inf"]  # le="0.0005", le="1.0"
        for route, series in answered:
            cumulative = list(zip(edges, accumulate(series.buckets), strict=True))
            duration.add_metric([route], cumulative, sum_value=series.total)
        yield duration


class SecretVersionAges(Collector):
    """`secret_version_age_seconds{name,selector}`: seconds since each served secret version
    was created (its CreatedDate), computed when scraped, so it grows between rotations."""

    def __init__(self, prefix: str) -> None:
        self._name = prefix + "secret_version_age_seconds"
        self._created: dict[tuple[str, str], float] = {}

    def set_all(self, created: Mapping[tuple[str, str], float]) -> None:
        """(name, selector) -> CreatedDate (unix time) of every served secret version."""
        self._created = dict(created)

    def collect(self) -> Iterator[Metric]:
        ages = GaugeMetricFamily(
            self._name,
            "Seconds since the served version of each secret was created (rotated)",
            labels=["name", "selector"],
        )
        now = time.time()
        for (name, selector), created in sorted(self._created.items()):
            ages.add_metric([name, selector], max(0.0, now - created))
        yield ages


class LastModifiedTimes(Collector):
    """`parameter_last_modified_timestamp_seconds{name}`, one float per served parameter: the
    same series as a labelled Gauge, without a Gauge child (lock, value object, label tuple) per
    parameter, ~0.6 KiB each (memory, issue #15). Series in the order they were first set."""

    def __init__(self, prefix: str) -> None:
        self._name = prefix + "parameter_last_modified_timestamp_seconds"
        self._times: dict[str, float] = {}

    def set(self, name: str, timestamp: float) -> None:
        self._times[name] = float(timestamp)

    def remove(self, name: str) -> None:
        """Raises KeyError when `name` has no series (as a Gauge's `remove` does)."""
        del self._times[name]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            self._name, "LastModifiedDate of each served parameter", labels=["name"]
        )
        for name, timestamp in list(self._times.items()):
            family.add_metric([name], timestamp)
        yield family


class Metrics:
    """One registry per agent, so tests and several agents in one process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        p = "ssm_sidecar_"
        self.http = HttpRequestMetrics(p)
        r.register(self.http)
        self.source_requests = Counter(
            p + "source_requests",
            "Calls to the parameter source",
            ["operation", "outcome"],
            registry=r,
        )
        self.source_throttled = Counter(
            p + "source_throttled", "Source calls refused by throttling", registry=r
        )
        self.decrypt_failures = Counter(
            p + "decrypt_failures", "Parameters that could not be decrypted", registry=r
        )
        self.parameter_changes = Counter(
            p + "parameter_changes", "Parameters added, updated or removed", ["kind"], registry=r
        )
        self.parameter_not_found = Counter(
            p + "parameter_not_found", "Configured parameters the source did not find", registry=r
        )
        self.parameters = Gauge(p + "parameters", "Parameters served", registry=r)
        self.parameter_last_modified = LastModifiedTimes(p)
        r.register(self.parameter_last_modified)
        self.refresh_duration = Histogram(
            p + "refresh_duration_seconds",
            "Time of one refresh cycle",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.refresh_errors = Counter(
            p + "refresh_errors", "Refresh cycles or parameters that failed", ["kind"], registry=r
        )
        self.removals_held = Counter(
            p + "removals_held",
            "Cycles whose removals were held: more than refresh.max_removal_share of the set",
            registry=r,
        )
        self.last_refresh_success = Gauge(
            p + "last_refresh_success_timestamp_seconds",
            "Unix time of the last successful refresh",
            registry=r,
        )
        self.signals_sent = Counter(
            p + "signals_sent", "Signals sent to the application", ["signal", "outcome"], registry=r
        )
        self.notify_commands = Counter(
            p + "notify_commands", "notify.command runs by outcome", ["outcome"], registry=r
        )
        self.template_errors = Counter(
            p + "template_errors", "Templates that failed to render", ["template"], registry=r
        )
        self.files_errors = Counter(
            p + "files_errors",
            "Files not written: unsafe or clashing paths, bundle name clashes, failed swaps",
            ["kind"],
            registry=r,
        )
        self.files_write_failing = Gauge(
            p + "files_write_failing",
            "1 while the latest set could not be written to files.dir (retried until it is)",
            registry=r,
        )
        self.output_failures = Counter(
            p + "output_failures",
            "Publishes an output (http, files, notify, ...) failed with an unexpected error",
            ["output"],
            registry=r,
        )
        self.ready = Gauge(p + "ready", "1 once the first complete load is done", registry=r)
        # Secrets Manager (their calls are in source_requests_total by operation and outcome).
        self.secrets = Gauge(p + "secrets", "Secrets Manager secret versions served", registry=r)
        self.secret_changes = Counter(
            p + "secret_changes",
            "Secrets added, updated (rotated) or removed",
            ["kind"],
            registry=r,
        )
        self.secret_failures = Counter(
            p + "secret_failures",
            "Secrets (or secret listings) that failed, by error code",
            ["code"],
            registry=r,
        )
        self.secret_version_age = SecretVersionAges(p)
        r.register(self.secret_version_age)
        # --- fleet mode (agent/fleet/, docs/fleet.md) ---
        self.fleet_role = Gauge(
            p + "fleet_role",
            "1 for this agent's fleet role (watcher, follower, polling, alone, starting)",
            ["role"],
            registry=r,
        )
        self.fleet_connected = Gauge(
            p + "fleet_connected", "1 while the fleet's Valkey/Redis answers", registry=r
        )
        self.fleet_records_applied = Counter(
            p + "fleet_records_applied", "Fleet records applied (newer than held)", registry=r
        )
        self.fleet_records_published = Counter(
            p + "fleet_records_published", "Fleet records published as the watcher", registry=r
        )
        self.fleet_records_refused = Counter(
            p + "fleet_records_refused",
            "Fleet records refused: signature, malformed, stale (older than held), state, meta",
            ["reason"],
            registry=r,
        )
        self.fleet_resyncs = Counter(
            p + "fleet_resyncs", "Resyncs from the fleet's state hash", ["reason"], registry=r
        )
        self.fleet_fallback_fetches = Counter(
            p + "fleet_fallback_fetches",
            "SecureStrings fetched from SSM by name because KMS would not decrypt them",
            registry=r,
        )
        # --- end fleet mode ---
        self.http_open_connections = Gauge(
            p + "http_open_connections", "Connections open on a listener", ["listener"], registry=r
        )
        self.http_connections_dropped = Counter(
            p + "http_connections_dropped",
            "Connections closed by a limit: evicted at the cap, refused over it, header timeout",
            ["listener", "reason"],
            registry=r,
        )
        self.http_rate_limited = Counter(
            p + "http_rate_limited",
            "Requests refused by a rate limit (on-demand fetches, refreshes)",
            ["kind"],
            registry=r,
        )
