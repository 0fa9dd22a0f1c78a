from __future__ import annotations

import io
import json

import pytest
import structlog

from agent.keys import env_name, env_names, key_under
from agent.logs import redactor, setup_logging


def test_keys_relative_to_path() -> None:
    assert key_under("/myapp/prod", "/myapp/prod/db/url") == "db/url"
    assert key_under("/myapp/prod/", "/myapp/prod/x") == "x"
    assert key_under("/", "/a/b") == "a/b"


def test_env_names_follow_the_design() -> None:
    assert env_name("db/url") == "DB_URL"
    assert env_name("api-key.v2") == "API_KEY_V2"
    assert env_names(["db/url", "db/password"]) == {
        "DB_URL": "db/url",
        "DB_PASSWORD": "db/password",
    }
    with pytest.raises(ValueError, match="'db/url' and 'db-url' both become DB_URL"):
        env_names(["db/url", "db-url"])


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
        assert redactor._scrub("extra-00000 extra-04999") == "extra-00000 [redacted]"
    finally:
        redactor.reset()
