"""The agent holds every value in memory: it is not dumpable (no core dump, and no other process
of its uid may ptrace it or read /proc/<pid>/mem or environ). Checked on the real process, run as
an unprivileged uid, since root may read any process anyway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.builders import agent_config, write_config
from tests.support.processes import AgentProcess, agent_command

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not sys.platform.startswith("linux"),
    reason="needs root (to run the agent as another uid) and setpriv, on Linux",
)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged agent can read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ssm-sidecar-dump-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _config(d: Path) -> Path:
    (d / "values.toml").write_text('"/app/db/password" = "dump-me-not"\n')
    (d / "values.toml").chmod(0o644)
    config = write_config(d / "config.toml", agent_config())
    config.chmod(0o644)
    return config


def test_the_agent_process_is_not_dumpable(shared_dir: Path) -> None:
    config = _config(shared_dir)
    command = [*AS_NOBODY, *agent_command("run", "-c", str(config))]
    with AgentProcess(command=command, env={"PYTHONDONTWRITEBYTECODE": "1"}) as agent:
        agent.wait_for_event("ready")
        status = Path(f"/proc/{agent.pid}/status").read_text()
        assert f"Uid:\t{NOBODY}\t" in status, "the agent runs as nobody"
        # The kernel hands the /proc/<pid> files of a non-dumpable process to root.
        assert os.stat(f"/proc/{agent.pid}/environ").st_uid == 0
        # Another process of the agent's own uid cannot read its environment (nor its memory).
        peek = subprocess.run(
            [*AS_NOBODY, "cat", f"/proc/{agent.pid}/environ"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        assert peek.returncode != 0 and b"Permission denied" in peek.stderr
    assert "dump-me-not" not in agent.log_text()
