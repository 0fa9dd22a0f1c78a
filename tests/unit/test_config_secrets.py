"""[[secrets]] in the config: shapes, keys shared with parameters, bundles of a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from tests.support.config_check import assert_check_refuses

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf"

# (description, toml text, key that must be named, words the reason must hold)
BROKEN = [
    ("neither id nor prefix", '[[secrets]]\nalias = "x"\n', "secrets[0]", "id or prefix"),
    ("id and prefix", '[[secrets]]\nid = "a"\nprefix = "b/"\n', "secrets[0].prefix", "id"),
    (
        "stage and version id",
        f'[[secrets]]\nid = "a"\nversion_stage = "AWSPREVIOUS"\nversion_id = "{"1" * 32}"\n',
        "secrets[0].version_id",
        "version_stage",
    ),
    ("bad name", '[[secrets]]\nid = "prod db"\n', "secrets[0].id", "secret name"),
    (
        "short version id",
        '[[secrets]]\nid = "a"\nversion_id = "12"\n',
        "secrets[0].version_id",
        "32",
    ),
    ("alias on prefix", '[[secrets]]\nprefix = "p/"\nalias = "x"\n', "secrets[0].alias", "prefix"),
    (
        "stage on prefix",
        '[[secrets]]\nprefix = "p/"\nversion_stage = "AWSPREVIOUS"\n',
        "secrets[0].version_stage",
        "AWSCURRENT",
    ),
    ("duplicate", '[[secrets]]\nid = "a"\n[[secrets]]\nid = "a"\n', "secrets[1].id", "duplicates"),
    (
        "two keys",
        '[[secrets]]\nid = "a"\nalias = "k"\n[[secrets]]\nid = "b"\nalias = "k"\n',
        "secrets[1]",
        "key 'k'",
    ),
    (
        "key of a parameter",
        '[[parameters]]\nname = "/db"\n[[secrets]]\nid = "db"\n',
        "secrets[0]",
        "parameters[0]",
    ),
    (
        "name under a prefix",
        '[[secrets]]\nprefix = "prod/"\n[[secrets]]\nid = "prod/db"\n',
        "secrets[1].id",
        "prefix",
    ),
    (
        "overlapping prefixes",
        '[[secrets]]\nprefix = "prod/"\n[[secrets]]\nprefix = "prod/db/"\n',
        "secrets[1].prefix",
        "overlaps",
    ),
    (
        "bundle of an unknown secret",
        '[[secrets]]\nid = "prod/db"\n[files]\ndir = "/tmp/x"\n'
        '[[files.bundle]]\npath = "db.env"\nsecret = "nope"\n',
        "files.bundle[0].secret",
        "not the key",
    ),
    (
        "bundle with secret and prefix",
        '[[secrets]]\nid = "prod/db"\n[files]\ndir = "/tmp/x"\n'
        '[[files.bundle]]\npath = "db.env"\nsecret = "prod/db"\nprefix = "/a"\n',
        "files.bundle[0].secret",
        "prefix",
    ),
    ("nothing to serve", '[refresh]\ninterval = "30s"\n', "parameters", "[[secrets]]"),
]


@pytest.mark.parametrize(("what", "text", "key", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_check_refuses_broken_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, text: str, key: str, reason: str
) -> None:
    assert_check_refuses(tmp_path / "config.toml", text, key, reason, capsys)


def test_secrets_alone_are_a_config() -> None:
    cfg = parse_config(
        {
            "secrets": [
                {"id": "prod/db"},
                {"id": "prod/db", "version_stage": "AWSPREVIOUS", "alias": "db_previous"},
                {"id": ARN, "alias": "remote"},
                {"prefix": "shared/"},
            ]
        }
    )
    current, previous, remote, shared = cfg.secrets
    assert cfg.parameters == ()
    assert (current.stage, current.selector) == ("AWSCURRENT", None)
    assert (previous.stage, previous.selector) == ("AWSPREVIOUS", "stage:AWSPREVIOUS")
    assert remote.is_arn and not current.is_arn
    assert shared.prefix == "shared/" and shared.required


def test_version_id_pins_a_version() -> None:
    entry = parse_config({"secrets": [{"id": "a", "version_id": "0" * 32}]}).secrets[0]
    assert (entry.stage, entry.selector) == (None, "version:" + "0" * 32)


def test_bundle_of_a_secret_picks_fields() -> None:
    cfg = parse_config(
        {
            "secrets": [{"id": "prod/db", "alias": "db"}],
            "files": {
                "dir": "/tmp/x",
                "bundle": [{"path": "db.env", "secret": "db", "fields": ["username", "host"]}],
            },
        }
    )
    assert cfg.files is not None
    assert cfg.files.bundle[0].fields == ("username", "host")


def test_fields_need_a_secret() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            {
                "parameters": [{"path": "/a"}],
                "files": {"dir": "/tmp/x", "bundle": [{"path": "a.env", "fields": ["x"]}]},
            }
        )
    assert exc.value.problems[0][0] == "files.bundle[0].fields"


def test_aws_protocols_names() -> None:
    cfg = parse_config(
        {
            "parameters": [{"path": "/a"}],
            "http": {"aws_protocols": ["secretsmanager"], "allowed_uids": [1000]},
        }
    )
    assert cfg.http.aws_protocols == ("secretsmanager",)
    with pytest.raises(ConfigError) as exc:
        parse_config({"parameters": [{"path": "/a"}], "http": {"aws_protocols": ["vault"]}})
    assert exc.value.problems[0][0].startswith("http.aws_protocols")
