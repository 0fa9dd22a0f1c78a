"""http.aws_protocols and http.allowed_uids: off by default, and refused where they would leave
the SDK protocol open to every local user."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config import ConfigError, parse_config


def http(**keys: Any) -> Any:
    return parse_config({"parameters": [{"path": "/a"}], "http": keys}, file="c.toml").http


def problem(**keys: Any) -> str:
    with pytest.raises(ConfigError) as refused:
        http(**keys)
    return str(refused.value)


def test_the_sdk_protocol_is_off_and_every_uid_admitted_by_default() -> None:
    cfg = http()
    assert cfg.aws_protocols == ()
    assert cfg.allowed_uids is None


def test_the_sdk_protocol_on_tcp_needs_allowed_uids() -> None:
    assert problem(aws_protocols=["secretsmanager"]).startswith("c.toml: http.allowed_uids: ")
    message = problem(aws_protocols=["ssm"])
    assert message.startswith("c.toml: http.allowed_uids: required when http.aws_protocols")
    assert problem(aws_protocols=["ssm"], listen="[::1]:2773").startswith(
        "c.toml: http.allowed_uids: required"
    )
    assert http(aws_protocols=["ssm"], allowed_uids=[1000]).aws_protocols == ("ssm",)
    both = http(aws_protocols=["ssm", "secretsmanager"], allowed_uids=[1000])
    assert both.aws_protocols == ("ssm", "secretsmanager")
    # A unix socket's file mode decides who may connect.
    assert http(aws_protocols=["ssm"], listen="unix:/run/a.sock").allowed_uids is None


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"aws_protocols": ["s3"], "allowed_uids": [0]}, "'s3' is not a protocol"),
        ({"allowed_uids": []}, "at least one uid"),
        ({"allowed_uids": [-1]}, "-1 is not a uid"),
    ],
)
def test_bad_values_name_their_key(keys: dict[str, Any], words: str) -> None:
    message = problem(**keys)
    assert message.startswith(f"c.toml: http.{next(iter(keys))}: ")
    assert words in message
