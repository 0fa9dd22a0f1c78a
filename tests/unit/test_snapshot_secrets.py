"""Secrets in the snapshot: hidden from repr, diffed by version, found by name or ARN."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agent.results import ParameterError
from agent.snapshot import Secret, find_secret, select_version
from tests.support.builders import snapshot

T = datetime(2026, 1, 1, tzinfo=UTC)
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"


def secret(
    version: str = "v1",
    value: str | None = "hunter2-secret",
    *,
    name: str = "prod/db",
    stages: tuple[str, ...] = ("AWSCURRENT",),
    selector: str | None = None,
    binary: bytes | None = None,
) -> Secret:
    return Secret(name, name, ARN, version, stages, T, value, binary, selector=selector)


def test_repr_never_shows_values() -> None:
    s = secret(binary=b"raw-bytes-secret", value=None)
    assert "raw-bytes-secret" not in repr(s) and "hunter2" not in repr(secret())
    assert "hunter2" not in repr(snapshot(secret()))


def test_diff_by_version_id() -> None:
    old = snapshot(secret("v1"), secret("p1", name="prod/api"))
    new = snapshot(secret("v2"), secret("n1", name="prod/new"))
    change = old.diff(new)
    assert [(c.kind, c.name, c.old_version_id, c.new_version_id) for c in change.secrets] == [
        ("updated", "prod/db", "v1", "v2"),
        ("added", "prod/new", None, "n1"),
        ("removed", "prod/api", "p1", None),
    ]
    assert change and change.summary()["secrets"][0] == {
        "change": "updated",
        "name": "prod/db",
        "old_version_id": "v1",
        "new_version_id": "v2",
    }
    assert not snapshot(secret()).diff(snapshot(secret()))
    assert "secrets" not in snapshot(secret()).diff(snapshot(secret())).summary()


def test_parameters_count_and_iteration_leave_secrets_out() -> None:
    s = snapshot(secret())
    assert len(s) == 0 and list(s) == [] and s.values_by_key() == {"prod/db": "hunter2-secret"}


def test_find_by_name_full_and_partial_arn() -> None:
    s = snapshot(secret(), secret("p", stages=("AWSPREVIOUS",), selector="stage:AWSPREVIOUS"))
    assert len(find_secret(s, "prod/db")) == 2
    assert len(find_secret(s, ARN)) == 2
    assert len(find_secret(s, ARN[:-7])) == 2
    assert find_secret(s, ARN[:-1]) == [] and find_secret(s, "prod") == []


def test_select_version_by_stage_and_id() -> None:
    current = secret("v2", stages=("AWSCURRENT",))
    previous = secret("v1", stages=("AWSPREVIOUS",), selector="stage:AWSPREVIOUS")
    held = [current, previous]
    assert select_version(held, None, None) is current
    assert select_version(held, None, "AWSPREVIOUS") is previous
    assert select_version(held, "v1", None) is previous
    assert select_version(held, "v1", "AWSCURRENT") is None
    assert select_version(held, None, "AWSPENDING") is None


def test_json_fields_as_text() -> None:
    value = json.dumps({"username": "u", "port": 5432, "ssl": True, "none": None, "o": {"a": 1}})
    assert secret(value=value).fields() == {
        "username": "u",
        "port": "5432",
        "ssl": "true",
        "none": "",
        "o": '{"a":1}',
    }
    assert secret(value="plain").fields() is None
    assert secret(value="[1, 2]").fields() is None
    assert secret(value=None, binary=b"{}").fields() is None


def test_binary_secret_as_bytes_and_text() -> None:
    s = secret(value=None, binary=b"\x00\xff")
    assert s.data == b"\x00\xff" and s.text == "AP8="


def test_errors_cover_secrets_not_parameters() -> None:
    held = secret()
    keep = ParameterError("prod/db", "AccessDeniedException", "denied", name="prod/db", secret=True)
    gone = ParameterError("prod/db", "ResourceNotFoundException", "gone", secret=True, keep=False)
    path = ParameterError("prod/", "AccessDeniedException", "denied", is_path=True, secret=True)
    plain = ParameterError("prod/db", "ParameterNotFound", "not found")
    assert keep.covers(held) and path.covers(held)
    assert not gone.covers(held) and not plain.covers(held)
    pinned = secret(selector="stage:AWSPREVIOUS")
    assert not keep.covers(pinned) and not path.covers(pinned)
