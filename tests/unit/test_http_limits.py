"""limits.py: the token bucket and the long-poll cap; the config keys that set them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from agent.config import ConfigError, parse_config
from agent.outputs.http.limits import Limited, LongPolls, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_the_burst_then_the_rate_and_counts_refusals() -> None:
    clock = Clock()
    refused = Counter("refused", "r", ["kind"], registry=CollectorRegistry())
    bucket = TokenBucket("on_demand", 2.0, 3, refused, clock=clock)
    for _ in range(3):
        bucket.take()
    with pytest.raises(Limited) as exc:
        bucket.take()
    assert (exc.value.status, exc.value.code) == (429, "ThrottlingException")
    assert "on_demand" in exc.value.message and "retry in 0.5s" in exc.value.message
    clock.now += 0.5  # one token back at 2 a second
    bucket.take()
    with pytest.raises(Limited):
        bucket.take()
    clock.now += 60  # refills up to the burst, no more
    for _ in range(3):
        bucket.take()
    with pytest.raises(Limited):
        bucket.take()
    assert refused.labels(kind="on_demand")._value.get() == 3


def test_refusal_lines_are_one_a_second_with_the_count_left_out() -> None:
    clock = Clock()
    bucket = TokenBucket("refresh", 0.001, 1, clock=clock)
    bucket.take()
    with capture_logs() as logs:
        for _ in range(50):
            with pytest.raises(Limited):
                bucket.take()
        clock.now += 1.0
        with pytest.raises(Limited):
            bucket.take()
    assert [(e["event"], e["kind"], e["suppressed"]) for e in logs] == [
        ("rate_limited", "refresh", 0),
        ("rate_limited", "refresh", 49),
    ]


def test_long_polls_beyond_the_limit_are_refused_and_slots_come_back() -> None:
    polls = LongPolls(2)
    with polls.hold(), polls.hold():
        assert polls.waiting == 2
        with pytest.raises(Limited) as exc, polls.hold():
            pass
        assert exc.value.status == 429 and "http.max_long_polls" in exc.value.message
    assert polls.waiting == 0


def _http(**http: object) -> object:
    return parse_config({"parameters": [{"path": "/a"}], "http": http}, "c.toml").http


def test_max_long_polls_defaults_to_a_quarter_of_max_concurrency() -> None:
    assert _http().long_poll_limit == 64  # type: ignore[attr-defined]
    assert _http(max_concurrency=1).long_poll_limit == 1  # type: ignore[attr-defined]
    assert _http(max_long_polls=5).long_poll_limit == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("http", "message"),
    [
        (
            {"max_concurrency": 10, "max_long_polls": 10},
            "c.toml: http.max_long_polls: must be less than max_concurrency (10)",
        ),
        ({"body_timeout": "10ms"}, "c.toml: http.body_timeout: must be at least 100ms"),
        ({"max_connections": 2}, "c.toml: http.max_connections:"),
        ({"on_demand_rate": 0}, "c.toml: http.on_demand_rate:"),
        ({"max_body_bytes": 10}, "c.toml: http.max_body_bytes:"),
    ],
)
def test_bad_limits_name_the_key(http: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _http(**http)
    assert str(exc.value).startswith(message)
