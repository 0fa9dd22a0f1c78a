"""Config: every problem found up front, reported as `file: key: reason`, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ConfigError, load_config, parse_config
from agent.durations import parse_duration
from tests.support.builders import agent_config
from tests.support.config_check import assert_check_refuses

GOOD = """
[source]
type = "ssm"
region = "eu-west-1"

[[parameters]]
path = "/myapp/prod"

[[parameters]]
name = "/shared/db/password"
version = 3
alias = "db_password"
"""

# (description, toml text, key that must be named, words the reason must hold)
BROKEN = [
    (
        "unknown top-level key",
        '[[parameters]]\npath = "/a"\n[bogus]\nx = 1\n',
        "bogus",
        "unknown key",
    ),
    (
        "unknown nested key",
        '[[parameters]]\npath = "/a"\n[refresh]\nintervall = "30s"\n',
        "refresh.intervall",
        "unknown key",
    ),
    (
        "wrong type",
        '[[parameters]]\npath = "/a"\n[refresh]\njitter = "lots"\n',
        "refresh.jitter",
        "number",
    ),
    (
        "version with label",
        '[[parameters]]\nname = "/a"\nversion = 3\nlabel = "x"\n',
        "parameters[0].label",
        "version",
    ),
    ("path with name", '[[parameters]]\npath = "/a"\nname = "/b"\n', "parameters[0].name", "path"),
    (
        "malformed duration",
        '[[parameters]]\npath = "/a"\n[refresh]\ninterval = "30 parsecs"\n',
        "refresh.interval",
        "duration",
    ),
    (
        "non-loopback listen",
        '[[parameters]]\npath = "/a"\n[http]\nlisten = "0.0.0.0:2773"\n',
        "http.listen",
        "loopback",
    ),
    (
        "unknown signal",
        '[[parameters]]\npath = "/a"\n[notify]\nsignal = "SIGNOPE"\n',
        "notify.signal",
        "signal",
    ),
    (
        "non-octal mode",
        '[[parameters]]\npath = "/a"\n[files]\ndir = "/tmp/x"\nmode = "0999"\n',
        "files.mode",
        "octal",
    ),
    ("no parameters", '[refresh]\ninterval = "30s"\n', "parameters", "missing"),
    (
        "entry with neither path nor name",
        "[[parameters]]\nrequired = true\n",
        "parameters[0]",
        "path or name",
    ),
    ("path not absolute", '[[parameters]]\npath = "myapp"\n', "parameters[0].path", "start with /"),
    (
        "file source without path",
        '[source]\ntype = "file"\n[[parameters]]\npath = "/a"\n',
        "source.path",
        "required",
    ),
    (
        "unknown source type",
        '[source]\ntype = "vault"\n[[parameters]]\npath = "/a"\n',
        "source.type",
        "ssm",
    ),
    (
        "overlapping paths",
        '[[parameters]]\npath = "/a"\n[[parameters]]\npath = "/a/b"\n',
        "parameters[1].path",
        "overlaps",
    ),
    (
        "external_id without role",
        '[source]\nexternal_id = "x"\n[[parameters]]\npath = "/a"\n',
        "source.external_id",
        "role_arn",
    ),
    (
        "bad log format",
        '[[parameters]]\npath = "/a"\n[log]\nformat = "xml"\n',
        "log.format",
        "json",
    ),
    (
        "env without restart",
        '[[parameters]]\npath = "/a"\n[exec]\nenv = true\n',
        "exec.env",
        "restart",
    ),
    (
        "pid_file and process",
        '[[parameters]]\npath = "/a"\n[notify]\npid_file = "/x"\nprocess = "y"\n',
        "notify.process",
        "pid_file",
    ),
    ("TOML syntax error", "[[parameters]\npath = ", "(syntax)", "invalid TOML"),
]


@pytest.mark.parametrize(("what", "text", "key", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_check_refuses_broken_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, text: str, key: str, reason: str
) -> None:
    assert_check_refuses(tmp_path / "config.toml", text, key, reason, capsys)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[parameters]]\npath = "/a"\n[refresh]\ninterval = "x"\njitter = 7\n[y]\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    keys = [k for k, _ in exc.value.problems]
    assert keys == ["refresh.interval", "refresh.jitter", "y"]


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: (file): not found" in capsys.readouterr().err


def test_check_prints_effective_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    assert main(["check", "-c", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["refresh"] == {
        "interval": "30s",
        "jitter": 0.1,
        "max_backoff": "5m",
        "splay": "0s",
        "max_removal_share": 0.5,
        "list_by": "path",
        "relist_every": 10,
    }
    assert shown["parameters"][1] == {
        "name": "/shared/db/password",
        "version": 3,
        "alias": "db_password",
        "required": True,
    }
    assert shown["http"]["listen"] == "127.0.0.1:2773"


def test_config_from_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("SSM_SIDECAR_CONFIG", str(path))
    assert main(["check"]) == 0


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "source": {"type": "file", "path": "dev.toml"},
            "parameters": [{"path": "/a"}],
            "files": {"dir": "out", "template": [{"source": "t.j2", "path": "t"}]},
        },
        file=str(tmp_path / "c.toml"),
    )
    assert cfg.source.path == tmp_path / "dev.toml"
    assert cfg.files is not None and cfg.files.dir == tmp_path / "out"
    assert cfg.files.template[0].source == tmp_path / "t.j2"


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:2773", "localhost:1", "[::1]:2773", "127.0.0.5:80", "unix:/run/x.sock"]
)
def test_loopback_and_unix_listeners_accepted(listen: str) -> None:
    cfg = parse_config({"parameters": [{"path": "/a"}], "http": {"listen": listen}})
    assert cfg.http.listen == listen


@pytest.mark.parametrize("listen", ["0.0.0.0:2773", "10.0.0.1:80", "[::]:2773", "example.com:80"])
def test_other_listeners_refused(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"http\.listen"):
        parse_config({"parameters": [{"path": "/a"}], "http": {"listen": listen}})


def test_name_under_a_configured_path_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"parameters\[1\]\.name: is already under"):
        parse_config({"parameters": [{"path": "/a"}, {"name": "/a/b"}]})


def test_duplicate_keys_refused() -> None:
    with pytest.raises(ConfigError, match="key 'db'"):
        parse_config({"parameters": [{"name": "/x/db", "alias": "db"}, {"name": "/db"}]})


def test_modes_and_signals_normalised() -> None:
    cfg = parse_config(
        {
            "parameters": [{"path": "/a"}],
            "files": {"dir": "/tmp/x", "mode": "0440", "dir_mode": 0o750},
            "notify": {"signal": "usr1"},
        }
    )
    assert cfg.files is not None and (cfg.files.mode, cfg.files.dir_mode) == (0o440, 0o750)
    assert cfg.notify.signal == "SIGUSR1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("500ms", 0.5), ("1m30s", 90), (15, 15)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "5 m", "1d", "-1s", "s", "1h1"])
def test_bad_durations(text: str) -> None:
    # A string needs its unit ("30" is ambiguous); a bare TOML number is taken as seconds.
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_check_finds_template_syntax_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.j2").write_text("url={{ params['db/url'] }}\n")
    (tmp_path / "bad.j2").write_text("url={{ params['db/url'] \n")
    path = tmp_path / "config.toml"
    path.write_text(
        '[source]\nregion = "us-east-1"\n[[parameters]]\npath = "/a"\n[files]\ndir = "out"\n'
        '[[files.template]]\nsource = "good.j2"\npath = "good"\n'
        '[[files.template]]\nsource = "bad.j2"\npath = "bad"\n'
        '[[files.template]]\nsource = "missing.j2"\npath = "missing"\n'
    )
    assert main(["check", "-c", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "files.template[1].source",
        "files.template[2].source",
    ]
    assert "syntax error at line" in lines[0] and "not found" in lines[1]


def test_config_refuses_malformed_access_key_ids() -> None:
    data = agent_config(http={"sdk_access_key_ids": ["AKIAEXAMPLE000000001", "AKIA EXAMPLE"]})
    with pytest.raises(ConfigError) as raised:
        parse_config(data, file="config.toml")
    assert str(raised.value) == (
        "config.toml: http.sdk_access_key_ids: 'AKIA EXAMPLE' is not an access key id "
        "(letters and digits only)"
    )
    data["http"]["sdk_access_key_ids"] = ["AKIAEXAMPLE000000001"]
    assert parse_config(data).http.sdk_access_key_ids == ("AKIAEXAMPLE000000001",)
