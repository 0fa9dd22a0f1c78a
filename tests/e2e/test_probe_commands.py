"""The probes we ship (Kubernetes httpGet probes on the ops listener, the image's HEALTHCHECK),
run for real against a real agent: they must fail before the first complete load and pass after."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.support.builders import write_file_source
from tests.support.moto import free_port
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SHIPPED_PORT = "2773"


def _kubernetes_probes() -> dict[str, str]:
    """probe -> the path the kubelet GETs on the sidecar's `ops` port."""
    docs = yaml.safe_load_all((REPO / "deploy/kubernetes/base/deployment.yaml").read_text())
    [deployment] = [d for d in docs if d and d["kind"] == "Deployment"]
    [sidecar] = deployment["spec"]["template"]["spec"]["initContainers"]
    return {probe: sidecar[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe")}


def _http_get(port: int, path: str) -> int:
    """What the kubelet does for an httpGet probe: success is a status in 200..399."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return 0 if 200 <= resp.status < 400 else 1
    except (urllib.error.URLError, OSError):
        return 1


def _docker_healthcheck() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK"))
    command: list[str] = json.loads(line.partition(" CMD ")[2])
    return command


def _run(command: list[str], port: int) -> int:
    assert command[0] == "python"
    assert any(SHIPPED_PORT in part for part in command)
    # `python` in the image is the venv's interpreter; here it is the test's own.
    argv = [sys.executable] + [p.replace(SHIPPED_PORT, str(port)) for p in command[1:]]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def test_probes_fail_until_the_first_complete_load_then_pass(tmp_path: Path) -> None:
    probes = _kubernetes_probes()
    startup, liveness, healthcheck = (
        probes["startupProbe"],
        probes["livenessProbe"],
        _docker_healthcheck(),
    )
    port, ops_port = free_port(), free_port()
    # Nothing listens yet: every probe fails.
    assert _http_get(ops_port, liveness) != 0
    assert _http_get(ops_port, startup) != 0
    assert _run(healthcheck, port) != 0

    config = write_file_source(
        tmp_path,
        '"/app/a" = "alpha-value"\n',
        parameters=[{"path": "/app"}, {"name": "/shared/required"}],
        refresh={"interval": "300ms", "max_backoff": "300ms"},
        http={
            "listen": f"127.0.0.1:{port}",
            "ops_listen": f"127.0.0.1:{ops_port}",
            "token_file": tmp_path / "token",
        },
    )
    values = tmp_path / "values.toml"
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("ops_listening")
        agent.wait_for_event("load_incomplete")
        assert _http_get(ops_port, liveness) == 0
        assert _http_get(ops_port, startup) != 0
        assert _run(healthcheck, port) != 0

        values.write_text('"/app/a" = "alpha-value"\n"/shared/required" = "beta-value"\n')
        wait_until(
            lambda: _http_get(ops_port, startup) == 0, 20, interval=0.2, what="startup probe ok"
        )
        assert _run(healthcheck, port) == 0
        assert _http_get(ops_port, liveness) == 0
