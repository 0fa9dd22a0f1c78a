"""`--version`, `check` and `get` start without the agent's runtime: each imports neither the
HTTP server, nor the AWS SDK, nor jinja2 (a fresh interpreter per command, its modules listed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.get_command import TOKEN_HEADER
from agent.outputs.http.context import TOKEN_HEADER as SERVER_TOKEN_HEADER

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("aiohttp", "aiobotocore", "botocore", "jinja2", "agent.app", "uvloop", "watchfiles")

PROBE = """
import sys
from agent.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*argv: str, cwd: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    return set(done.stderr.splitlines())


def _runtime(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in RUNTIME or m in RUNTIME)


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["check", "-c", "config.toml"],
        ["get", "--url", "http://127.0.0.1:1", "--token-file", "token", "/app/x"],
        ["get", "-c", "config.toml", "/app/x"],
    ],
)
def test_light_commands_import_no_runtime(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "values.toml").write_text('"/app/x" = "1"\n')
    (tmp_path / "token").write_text("t")
    (tmp_path / "config.toml").write_text(
        '[source]\ntype = "ssm"\nregion = "eu-west-1"\n[[parameters]]\npath = "/app"\n'
        '[http]\nlisten = "127.0.0.1:1"\ntoken_file = "token"\n[files]\ndir = "out"\n'
    )
    modules = imported_by(*argv, cwd=tmp_path)
    assert "agent.cli" in modules
    assert _runtime(modules) == []


def test_check_imports_jinja2_only_for_templates(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("{{ params['/app/x'] }}")
    (tmp_path / "config.toml").write_text(
        '[source]\ntype = "ssm"\nregion = "eu-west-1"\n[[parameters]]\npath = "/app"\n'
        '[files]\ndir = "out"\n[[files.template]]\nsource = "t.j2"\npath = "x.txt"\n'
    )
    assert "jinja2" in imported_by("check", "-c", "config.toml", cwd=tmp_path)


def test_get_names_the_servers_token_header() -> None:
    assert TOKEN_HEADER == SERVER_TOKEN_HEADER
