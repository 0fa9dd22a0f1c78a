"""Prometheus metrics (prefix ssm_sidecar_). Labels carry names and codes, never values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """One registry per agent, so tests and several agents in one process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        p = "ssm_sidecar_"
        self.http_requests = Counter(
            p + "http_requests", "HTTP requests answered", ["route", "code"], registry=r
        )
        self.http_request_duration = Histogram(
            p + "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=(
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
            ),
            registry=r,
        )
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
        self.parameter_last_modified = Gauge(
            p + "parameter_last_modified_timestamp_seconds",
            "LastModifiedDate of each served parameter",
            ["name"],
            registry=r,
        )
        self.refresh_duration = Histogram(
            p + "refresh_duration_seconds",
            "Time of one refresh cycle",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.refresh_errors = Counter(
            p + "refresh_errors", "Refresh cycles or parameters that failed", ["kind"], registry=r
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
        self.ready = Gauge(p + "ready", "1 once the first complete load is done", registry=r)
