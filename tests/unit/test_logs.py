"""logs.py: JSON lines on the stream given; every current value (served or fetched on demand)
redacted from every event; the value index behind the redactor, clip() and LogThrottle."""

from __future__ import annotations

import io
import json
import random
import string

import pytest
import structlog

from agent.logs import REDACTED, LogThrottle, Redactor, ValueIndex, clip, redactor, setup_logging


def naive_scrub(text: str, values: list[str]) -> str:
    """What the redactor did before: every value, longest first, replaced wherever it occurs."""
    for v in sorted(values, key=len, reverse=True):
        text = text.replace(v, REDACTED)
    return text


@pytest.mark.parametrize("seed", range(20))
def test_the_index_finds_every_value_the_naive_loop_finds(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "abcAB01/-"  # small, so that values share prefixes and overlap often
    values = list({"".join(rng.choices(alphabet, k=rng.randint(4, 12))) for _ in range(60)})
    index = ValueIndex()
    for v in values:
        index.add(v)
    for _ in range(20):
        parts = [
            rng.choice(values) if rng.random() < 0.3 else rng.choice(alphabet) for _ in range(40)
        ]
        text = "".join(parts)
        scrubbed = index.scrub(text)
        for v in values:
            assert v not in scrubbed.replace(REDACTED, "\0")
        # Where the naive loop finds nothing, neither does the index.
        if naive_scrub(text, values) == text:
            assert scrubbed == text


def test_overlapping_and_nested_values_are_scrubbed_whole() -> None:
    index = ValueIndex()
    for v in ("abcdef", "defghi", "cdef", "xxsecretyy", "secret"):
        index.add(v)
    assert index.scrub("--abcdefghi--") == f"--{REDACTED}--"
    assert index.scrub("xxsecretyy and secret") == f"{REDACTED} and {REDACTED}"
    assert index.scrub("nothing here") == "nothing here"
    assert index.scrub("abc") == "abc"
    index.discard("secret")
    assert index.scrub("a secret") == "a secret"
    assert len(index) == 4


def test_the_redactor_keeps_on_demand_values_across_snapshots_and_forgets_old_ones() -> None:
    r = Redactor()
    r.update(["served-1", "both-value"])
    r.add("fetched-1", "both-value")
    r.update(["served-2"])
    assert r.scrub("served-1 served-2 fetched-1 both-value") == (
        f"served-1 {REDACTED} {REDACTED} {REDACTED}"
    )
    event = r(None, "info", {"event": "x", "detail": "has served-2", "n": 3})
    assert event == {"event": "x", "detail": f"has {REDACTED}", "n": 3}


def test_clip_cuts_attacker_fields_and_says_how_much() -> None:
    assert clip("short") == "short"
    assert clip(None) == ""
    long = "A" * 5000
    assert clip(long) == "A" * 200 + "...(+4800 chars)"


def test_log_throttle_one_per_key_per_interval() -> None:
    now = [0.0]
    throttle = LogThrottle(1.0, clock=lambda: now[0], max_keys=2)
    assert throttle.allow("a") == 0
    assert throttle.allow("a") is None
    assert throttle.allow("b") == 0
    now[0] = 1.5
    assert throttle.allow("a") == 1
    # Keys are bounded: a third one starts afresh rather than growing the table.
    assert throttle.allow("c") == 0


def test_a_refused_request_with_3001_values_held_is_scrubbed_correctly() -> None:
    rng = random.Random(3)
    values = ["".join(rng.choices(string.ascii_letters, k=32)) for _ in range(3001)]
    r = Redactor()
    r.update(values)
    target = "AmazonSSM." + values[1234] + "x" * 8000
    event = r(None, "info", {"event": "sdk_request_refused", "target": clip(target)})
    assert values[1234] not in event["target"] and REDACTED in event["target"]
    assert len(event["target"]) < 260


def test_logs_are_json_lines_and_values_are_redacted() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    redactor.update(["s3cr3t-value", "ab"])
    try:
        log = structlog.get_logger("t")
        log.info("x", detail="boom: s3cr3t-value leaked", n=3)
        log.debug("hidden")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert len(lines) == 1
        assert lines[0]["detail"] == "boom: [redacted] leaked" and lines[0]["n"] == 3
        assert lines[0]["event"] == "x" and lines[0]["level"] == "info" and "timestamp" in lines[0]
    finally:
        redactor.update([])


def test_on_demand_values_are_redacted_too_and_bounded() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    try:
        redactor.update(["served-value"])
        redactor.add("fetched-on-demand", None)
        redactor.update(["new-served-value"])  # a swap keeps the on-demand ones
        structlog.get_logger("t").info("x", a="fetched-on-demand", b="served-value")
        line = json.loads(out.getvalue())
        assert line["a"] == "[redacted]" and line["b"] == "served-value"
        for i in range(5000):
            redactor.add(f"extra-{i:05d}")
        assert redactor.scrub("extra-00000 extra-04999") == "extra-00000 [redacted]"
    finally:
        redactor.reset()
