"""Records of the standard `logging` module (aiohttp, asyncio, warnings) come out as the same JSON
lines as the agent's own events, through the same redactor."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.logs import redactor, setup_logging


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    redactor.update(["s3cr3t-stdlib-value"])
    try:
        yield stream
    finally:
        redactor.update([])


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_library_record_is_a_json_line_with_its_logger_and_level(out: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").error("Error handling request from %s", "127.0.0.1")
    (line,) = _lines(out)
    assert line["event"] == "Error handling request from 127.0.0.1"
    assert line["logger"] == "aiohttp.server" and line["level"] == "error"
    assert "timestamp" in line


def test_a_library_record_goes_through_the_redactor(out: io.StringIO) -> None:
    logging.getLogger("asyncio").warning("saw %s", "x s3cr3t-stdlib-value y")
    (line,) = _lines(out)
    assert "s3cr3t-stdlib-value" not in out.getvalue()
    assert line["event"] == "saw x [redacted] y"


def test_a_traceback_is_one_json_field(out: io.StringIO) -> None:
    try:
        raise RuntimeError("boom s3cr3t-stdlib-value")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    (line,) = _lines(out)
    assert "RuntimeError: boom [redacted]" in str(line["exception"])


def test_a_malformed_request_is_a_warning_without_a_traceback(out: io.StringIO) -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    exc = BadHttpMessage("Invalid character in Content-Length:\n\n  b'Content-Length: abc'")
    logging.getLogger("aiohttp.server").error(
        "Error handling request from %s", "127.0.0.1", exc_info=exc
    )
    (line,) = _lines(out)
    assert line["event"] == "http_bad_request" and line["level"] == "warning"
    assert line["peer"] == "127.0.0.1"
    assert line["error"] == "BadHttpMessage: Invalid character in Content-Length:"
    assert "exception" not in line


def test_only_library_warnings_and_errors_are_kept(out: io.StringIO) -> None:
    logging.getLogger("botocore.parsers").debug("Response body: b'{...}'")
    logging.getLogger("watchfiles.main").info("1 change detected")
    logging.getLogger("aiohttp.web").warning("kept")
    assert [line["event"] for line in _lines(out)] == ["kept"]


def test_library_warnings_below_the_configured_level_are_dropped() -> None:
    stream = io.StringIO()
    setup_logging("error", "json", stream=stream)
    from aiohttp.http_exceptions import BadHttpMessage

    logging.getLogger("aiohttp.web").warning("dropped")
    logging.getLogger("aiohttp.server").error("bad", exc_info=BadHttpMessage("x"))  # a warning
    logging.getLogger("aiohttp.web").error("kept")
    assert [line["event"] for line in _lines(stream)] == ["kept"]


def test_python_warnings_are_json_lines_too() -> None:
    # In a process of its own: pytest takes over `warnings` inside its tests.
    code = (
        "import warnings; from agent.logs import setup_logging; setup_logging(); "
        "warnings.warn('a coroutine was never awaited', RuntimeWarning, stacklevel=1)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    (line,) = [json.loads(x) for x in done.stderr.splitlines()]
    assert line["logger"] == "py.warnings" and line["level"] == "warning"
    assert "a coroutine was never awaited" in line["event"]
