"""as_datetime: botocore's dates (each with its own tzlocal()) are held in UTC, the same instant,
so a held parameter does not keep a time zone object of its own (memory, issue #15)."""

from __future__ import annotations

from datetime import UTC, datetime

from dateutil.tz import tzlocal, tzoffset  # type: ignore[import-untyped]

from agent.sources.aws import UNKNOWN_TIME, as_datetime


def test_an_aware_date_is_the_same_instant_in_utc() -> None:
    for tz in (tzlocal(), tzoffset("X", 7200)):
        parsed = datetime(2026, 12, 2, 18, 30, 15, 123000, tzinfo=tz)
        held = as_datetime(parsed)
        assert held == parsed
        assert held.tzinfo is UTC


def test_naive_dates_and_epochs_are_utc_and_anything_else_is_unknown() -> None:
    assert as_datetime(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert as_datetime(0).tzinfo is UTC
    assert as_datetime(None) is UNKNOWN_TIME
