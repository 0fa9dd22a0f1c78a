"""parameter_last_modified_timestamp_seconds is a collector over one dict (memory, issue #15);
scraped, it is byte for byte what the labelled Gauge it replaced exposed."""

from __future__ import annotations

import contextlib

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from agent.metrics import LastModifiedTimes, Metrics

NAME = "ssm_sidecar_parameter_last_modified_timestamp_seconds"


def test_it_exposes_what_a_labelled_gauge_did() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    times = LastModifiedTimes("ssm_sidecar_")
    ours.register(times)
    gauge = Gauge(NAME, "LastModifiedDate of each served parameter", ["name"], registry=theirs)
    steps = [
        ("set", "/app/b", 1_700_000_000.5),
        ("set", "/app/a", 1_600_000_000),
        ("set", '/q"x', 1),
    ]
    steps += [("set", "/app/b", 1_800_000_000), ("remove", "/app/a", 0), ("remove", "/gone", 0)]
    for op, name, value in steps:
        if op == "set":
            times.set(name, value)
            gauge.labels(name=name).set(value)
        else:
            with contextlib.suppress(KeyError):
                times.remove(name)
            with contextlib.suppress(KeyError):
                gauge.remove(name)
    assert generate_latest(ours) == generate_latest(theirs)


def test_an_absent_name_is_a_key_error_and_metrics_use_it() -> None:
    with pytest.raises(KeyError):
        LastModifiedTimes("x_").remove("/nope")
    metrics = Metrics()
    metrics.parameter_last_modified.set("/app/a", 5)
    assert f'{NAME}{{name="/app/a"}} 5.0' in generate_latest(metrics.registry).decode()
