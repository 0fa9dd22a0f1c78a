"""An agent imports what its configuration uses: the Secrets Manager source only with
[[secrets]], the AWS SDK protocol's route module only with http.aws_protocols (memory, #15).
A fresh interpreter builds the Agent for a config and lists its modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRETS_SOURCE = "agent.sources.secrets"
SDK_ROUTES = "agent.outputs.http.routes.aws_sdk"

PROBE = """
import sys
from agent.app import Agent
from agent.config import load_config
Agent(load_config(sys.argv[1]))
print("\\n".join(sorted(sys.modules)))
"""

BASE = (
    '[source]\ntype = "ssm"\nregion = "eu-west-1"\n[[parameters]]\npath = "/app"\n'
    '[http]\nlisten = "127.0.0.1:1"\ntoken_file = "token"\n'
)


def modules_for(tmp_path: Path, config: str) -> set[str]:
    path = tmp_path / "config.toml"
    path.write_text(config)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "1"},
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.splitlines())


def test_an_ssm_only_agent_imports_neither(tmp_path: Path) -> None:
    modules = modules_for(tmp_path, BASE)
    assert "agent.sources.ssm" in modules  # the probe saw the agent's modules at all
    assert SECRETS_SOURCE not in modules
    assert SDK_ROUTES not in modules


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[[secrets]]\nid = "app/db"\n', SECRETS_SOURCE),
        ('aws_protocols = ["ssm"]\nallowed_uids = [0]\n', SDK_ROUTES),
    ],
)
def test_each_is_imported_when_configured(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in modules_for(tmp_path, BASE + extra)
