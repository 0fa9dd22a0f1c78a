"""The README as a new user follows it: a fresh `git clone`, `make run`, then every command of
"How the app gets its values" verbatim from another shell; and `make test` starting cleanly.

The clone reuses this interpreter's environment instead of installing one (that takes a minute):
its `.venv` is a directory of links to this venv with a fresh `.installed` stamp, so `make` sees
an installed checkout and `.venv/bin/ssm-sidecar`, `.venv/bin/aws` resolve as they would after
`make install`. PYTHONPATH points at the clone, so the code that runs is the clone's.
The clone holds what is committed: uncommitted edits are not what a new user gets.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
VALUE = "postgres://app@localhost:5432/app"  # /myapp/dev/db/url in examples/dev-parameters.toml
PORT = 2773  # the README's commands name it
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VENV", "PYTHON", "RUN_CONFIG")


def readme_block(readme: str, heading: str) -> str:
    """The first ```sh block after `heading`."""
    section = readme[readme.index(heading) :]
    match = re.search(r"^```sh\n(.*?)^```$", section, re.M | re.S)
    assert match, f"no sh block under {heading!r}"
    return match.group(1)


def shell_commands(block: str) -> list[str]:
    """The block's commands: comments dropped, backslash continuations joined."""
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(pending.strip())
            pending = ""
    assert not pending, "a continuation line ends the block"
    return commands


def test_readme_block_parsing() -> None:
    block = "A=1\n# comment\ncurl -s \\\n  'http://x'\n\nmake get NAME=/a\n"
    assert shell_commands(block) == ["A=1", "curl -s    'http://x'", "make get NAME=/a"]


def _clean_env(clone: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SSM_SIDECAR_", "PYTEST_")) and k not in MAKE_VARS
    }
    env.update(PYTHONPATH=str(clone), PYTHONUNBUFFERED="1", HOME=str(clone.parent / "home"))
    return env


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix) or not (venv / "bin" / "ssm-sidecar").exists():
        pytest.skip("needs the project's venv (run under `make test`)")
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git and make")
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True, timeout=60)
    (tmp_path / "home").mkdir()
    linked = target / ".venv"
    linked.mkdir()
    for entry in venv.iterdir():
        if not entry.name.startswith("."):
            (linked / entry.name).symlink_to(entry)
    (linked / ".installed").touch()  # newer than the clone's pyproject.toml: nothing to install
    return target


class Make:
    """`make TARGET` in its own process group, its output collected."""

    def __init__(self, clone: Path, target: str) -> None:
        self.proc = subprocess.Popen(
            ["make", target],
            cwd=clone,
            env=_clean_env(clone),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.output += raw.decode("utf-8", "replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # make and the agent it started
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(5)
        return self.output


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def make_run(clone: Path) -> Iterator[Make]:
    assert _port_free(PORT), f"127.0.0.1:{PORT} is taken: the README's commands need that port"
    running = Make(clone, "run")
    try:
        wait_until(
            lambda: "ready" in running.output or running.proc.poll() is not None,
            60,
            what="`make run` ready",
        )
        assert running.proc.poll() is None, f"`make run` ended:\n{running.output}"
        yield running
    finally:
        output = running.stop()
    assert "Traceback" not in output, output


def test_how_the_app_gets_its_values_works_verbatim(clone: Path, make_run: Make) -> None:
    commands = shell_commands(
        readme_block((clone / "README.md").read_text(), "## How the app gets its values")
    )
    assert any(c.startswith("make get ") for c in commands)
    assert any("aws ssm get-parameter" in c for c in commands)
    marker = "@@exit="
    script = "".join(f"{c}\nprintf '\\n{marker}%s\\n' $?\n" for c in commands)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        env=_clean_env(clone),
        capture_output=True,
        text=True,
        timeout=120,
    )
    outputs = re.split(rf"\n{marker}(\d+)\n", done.stdout)
    results = list(zip(outputs[0::2], outputs[1::2], strict=False))
    assert len(results) == len(commands), done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for command, (out, code) in zip(commands, results, strict=True):
        assert code == "0", f"{command}\nexit {code}\n{out}\n{done.stderr}"
        if command.startswith("TOKEN="):
            continue
        assert VALUE in out, f"{command}\n{out}"
        if command == "cat run/params/db/url":
            assert out == VALUE  # one file at a time: the value exactly as stored
    assert "Traceback" not in make_run.output


def test_make_test_starts_from_a_fresh_clone(clone: Path) -> None:
    """`make test` collects every test in the clone (running them here would recurse)."""
    env = _clean_env(clone)
    env["PYTEST_ADDOPTS"] = "--collect-only -q -p no:cacheprovider"
    done = subprocess.run(
        ["make", "test"], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output, output
    assert re.search(r"^\d+ tests collected", output, re.M), output
