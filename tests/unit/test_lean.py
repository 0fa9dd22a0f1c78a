"""What a running agent leaves out (memory, issue #15), in a fresh interpreter that imports the
way `run` does (`import_runtime()` first) and builds the Agent for an SSM + HTTP + files config:
no file watcher library and its thread pool, no C++ runtime, no CA file in aiohttp's unused
default TLS contexts, and the environment as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys
env_before = dict(os.environ)
from agent.lean import import_runtime
import_runtime()
from agent.app import Agent
from agent.config import load_config
Agent(load_config(sys.argv[1]))
import aiohttp.connector as connector
maps = open("/proc/self/maps").read()
print(json.dumps({
    "modules": sorted(sys.modules),
    "libstdcxx": "libstdc++" in maps,
    "default_cas": [c.cert_store_stats()["x509_ca"] for c in
                    (connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED)],
    "env_kept": dict(os.environ) == env_before,
}))
"""

CONFIG = (
    '[source]\ntype = "ssm"\nregion = "eu-west-1"\n[[parameters]]\npath = "/app"\n'
    '[http]\nlisten = "127.0.0.1:1"\ntoken_file = "token"\n[files]\ndir = "files"\n'
)
# Big and unused by such an agent; each came back once would cost the MiB it was cut for.
NOT_IMPORTED = ("watchfiles", "anyio", "frozenlist._frozenlist", "jinja2")


def probe(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    (tmp_path / "config.toml").write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "config.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **env},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_an_ssm_http_files_agent_leaves_the_unused_weight_out(tmp_path: Path) -> None:
    found = probe(tmp_path, {"AWS_EC2_METADATA_DISABLED": "1"})
    assert "agent.sources.ssm" in found["modules"]  # the probe saw the agent's modules at all
    assert [m for m in NOT_IMPORTED if m in found["modules"]] == []
    assert not found["libstdcxx"]
    assert found["default_cas"] == [0, 0]


def test_the_environment_is_left_as_it_was(tmp_path: Path) -> None:
    """A user's SSL_CERT_FILE (and no FROZENLIST_NO_EXTENSIONS) is what children inherit."""
    found = probe(tmp_path, {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
    assert found["env_kept"]
    found = probe(tmp_path, {})
    assert found["env_kept"]
