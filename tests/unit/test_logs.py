"""Logs: JSON lines on the stream given, and every current value (served or fetched on demand)
redacted from every event."""

from __future__ import annotations

import io
import json

import structlog

from agent.logs import redactor, setup_logging


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
        assert "extra-00000" not in redactor._values and "extra-04999" in redactor._values
    finally:
        redactor.update([])
        redactor._extra.clear()
        redactor._rebuild()
