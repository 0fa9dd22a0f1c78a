"""Config errors speak TOML: what the file should say, never pydantic's own words.

Each case is a file a person could write by mistake; the reason must name the TOML shape that
was expected and the one that was found, and be the only problem reported for that mistake.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent import config as config_module
from agent.cli import main
from agent.config import ConfigError, parse_config

PYDANTIC_WORDS = ("Input should", "instance of", "pydantic", "Tuple should", "after validation")

# (description, toml text, the one key, words the reason must hold)
CASES = [
    (
        "[parameters] instead of [[parameters]]",
        '[parameters]\npath = "/a"\n',
        "parameters",
        ["array of tables", "[[parameters]]", "got a table"],
    ),
    (
        "[files.bundle] instead of [[files.bundle]]",
        '[[parameters]]\npath = "/a"\n[files]\ndir = "x"\n[files.bundle]\npath = "a.env"\n',
        "files.bundle",
        ["array of tables", "[[files.bundle]]", "got a table"],
    ),
    (
        "[[refresh]] instead of [refresh]",
        '[[parameters]]\npath = "/a"\n[[refresh]]\ninterval = "1s"\n',
        "refresh",
        ["must be a table", "[refresh]", "got an array of tables"],
    ),
    (
        "a section given as a value",
        'refresh = 5\n[[parameters]]\npath = "/a"\n',
        "refresh",
        ["must be a table", "[refresh]", "got an integer"],
    ),
    (
        "a string where an array of strings goes",
        '[[parameters]]\npath = "/a"\n[notify]\ncommand = "nginx -s reload"\n',
        "notify.command",
        ["array of strings", "got a string"],
    ),
    (
        "a number inside an array of strings",
        '[[parameters]]\npath = "/a"\n[notify]\ncommand = ["nginx", 1]\n',
        "notify.command[1]",
        ["must be a string", "got an integer"],
    ),
    (
        "an integer written as a word",
        '[[parameters]]\nname = "/a"\nversion = "three"\n',
        "parameters[0].version",
        ["must be an integer", "got a string"],
    ),
    (
        "an integer with a fraction",
        '[[parameters]]\nname = "/a"\nversion = 1.5\n',
        "parameters[0].version",
        ["must be an integer", "got a float"],
    ),
    (
        "a boolean that is not one",
        '[[parameters]]\npath = "/a"\nrecursive = "maybe"\n',
        "parameters[0].recursive",
        ["true or false", "got a string"],
    ),
    (
        "a value outside a fixed set",
        '[[parameters]]\npath = "/a"\n[source]\ntype = "s3"\n',
        "source.type",
        ['"ssm"', '"file"', 'got "s3"'],
    ),
    (
        "a misspelt key",
        '[[parameters]]\npath = "/a"\n[refresh]\nintervall = "1s"\n',
        "refresh.intervall",
        ["unknown key", 'did you mean "interval"'],
    ),
    (
        "a misspelt section",
        '[[parameters]]\npath = "/a"\n[refesh]\ninterval = "1s"\n',
        "refesh",
        ["unknown key", 'did you mean "refresh"'],
    ),
    (
        "no parameters at all",
        '[source]\nregion = "eu-west-1"\n',
        "parameters",
        ["missing", "[[parameters]]"],
    ),
    (
        "an empty parameters array",
        "parameters = []\n",
        "parameters",
        ["at least one", "[[parameters]]"],
    ),
    (
        "strings where tables go",
        'parameters = ["/a"]\n',
        "parameters[0]",
        ["must be a table", "got a string"],
    ),
    (
        "a number where a string goes",
        '[[parameters]]\npath = "/a"\n[source]\nregion = 5\n',
        "source.region",
        ["must be a string", "got an integer"],
    ),
    (
        "below a minimum",
        '[[parameters]]\npath = "/a"\n[source]\nmax_attempts = 0\n',
        "source.max_attempts",
        ["at least 1"],
    ),
    (
        "above a maximum",
        '[[parameters]]\npath = "/a"\n[refresh]\njitter = 2\n',
        "refresh.jitter",
        ["at most 1"],
    ),
    (
        "a number where a path goes",
        '[[parameters]]\npath = "/a"\n[files]\ndir = 5\n',
        "files.dir",
        ["must be a path", "got an integer"],
    ),
    (
        "a required key left out",
        '[[parameters]]\npath = "/a"\n[files]\nmode = "0400"\n',
        "files.dir",
        ["required key is missing"],
    ),
    (
        "a date where a string goes",
        '[[parameters]]\npath = "/a"\n[source]\nregion = 1979-05-27\n',
        "source.region",
        ["must be a string", "got a date"],
    ),
]


def _problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(text), "c.toml")
    return err.value.problems


@pytest.mark.parametrize(("what", "text", "key", "words"), CASES, ids=[c[0] for c in CASES])
def test_errors_are_phrased_for_toml(what: str, text: str, key: str, words: list[str]) -> None:
    problems = _problems(text)
    assert [k for k, _ in problems] == [key], problems
    reason = problems[0][1]
    for word in words:
        assert word in reason, (word, reason)
    for word in PYDANTIC_WORDS:
        assert word not in reason, (word, reason)


def test_the_cli_prints_the_toml_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[parameters]\npath = "/a"\n')
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"{path}: parameters: must be an array of tables ([[parameters]]), got a table "
        "([parameters]); write each entry as [[parameters]]"
    )


def test_no_config_anywhere_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    default = tmp_path / "etc" / "config.toml"
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", str(default))
    monkeypatch.delenv("SSM_SIDECAR_CONFIG", raising=False)
    assert main(["check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{default}: (file): not found")
    assert "-c CONFIG" in err and "$SSM_SIDECAR_CONFIG" in err and "config.example.toml" in err
    assert len(err.splitlines()) == 1


def test_a_config_named_by_the_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    named = tmp_path / "from-env.toml"
    monkeypatch.setenv("SSM_SIDECAR_CONFIG", str(named))
    assert main(["check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{named}: (file): not found (named by $SSM_SIDECAR_CONFIG)"


def test_a_config_named_by_c_is_just_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope.toml'}: (file): not found"


# --- paths that the files output refuses at run time are refused by `check` ------------------

FILES = '[files]\ndir = "out"\n'


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (
            '[[parameters]]\nname = "/a/b"\nalias = "../escape"\n' + FILES,
            "parameters[0].alias",
            ["'..' path segment"],
        ),
        (
            '[[parameters]]\nname = "/a/b"\nalias = "..data"\n' + FILES,
            "parameters[0].alias",
            ["reserved"],
        ),
        (
            '[[parameters]]\npath = "/a"\n' + FILES + '[[files.bundle]]\npath = "/etc/app.env"\n',
            "files.bundle[0].path",
            ["absolute path"],
        ),
        (
            '[[parameters]]\npath = "/a"\n'
            + FILES
            + '[[files.template]]\nsource = "t.j2"\npath = "conf//app.conf"\n',
            "files.template[0].path",
            ["empty path segment"],
        ),
        (
            '[[parameters]]\npath = "/a"\n'
            + FILES
            + '[[files.bundle]]\npath = "app.env"\n'
            + '[[files.template]]\nsource = "t.j2"\npath = "app.env"\n',
            "files.template[0].path",
            ["also the path of files.bundle[0]"],
        ),
        (
            '[[parameters]]\npath = "/a"\n'
            + FILES
            + '[[files.bundle]]\npath = "conf"\n'
            + '[[files.template]]\nsource = "t.j2"\npath = "conf/app.conf"\n',
            "files.template[0].path",
            ["needs 'conf' as a directory", "files.bundle[0]"],
        ),
        (
            '[[parameters]]\nname = "/x/y"\nalias = "app.env"\n'
            + FILES
            + '[[files.bundle]]\npath = "app.env"\n',
            "parameters[0].alias",
            ["also the path of files.bundle[0]"],
        ),
    ],
)
def test_paths_refused_at_run_time_are_refused_by_check(
    text: str, key: str, words: list[str]
) -> None:
    problems = _problems(text)
    assert [k for k, _ in problems] == [key], problems
    for word in words:
        assert word in problems[0][1], problems


def test_a_secret_key_refused_at_run_time_is_refused_by_check() -> None:
    text = '[[secrets]]\nid = "prod/db"\nalias = "../db"\n' + FILES
    assert _problems(text) == [
        ("secrets[0].alias", "'../db' has a '..' path segment (a path under files.dir)")
    ]


def test_an_alias_is_not_a_path_without_files() -> None:
    cfg = parse_config(tomllib.loads('[[parameters]]\nname = "/a/b"\nalias = "../odd"\n'), "c.toml")
    assert cfg.parameters[0].alias == "../odd"
