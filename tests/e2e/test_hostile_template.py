"""A hostile template configured in the real agent: nested range loops that would run for hours,
and a string product that would take a terabyte. The agent still answers /ping, keeps cycling
(the other files follow every change), answers POST /v1/refresh, counts and logs each failed
render, and exits on SIGTERM within 2 s even while a render is running."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.builders import write_atomic, write_file_source
from tests.support.child_apps import http_get
from tests.support.http_api import metric_value
from tests.support.moto import free_port
from tests.support.processes import AgentProcess, cpu_seconds
from tests.support.waiting import wait_until

FOREVER = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HUGE = '{{ "x" * 10**12 }}'


def _config(tmp_path: Path, port: int, timeout: str) -> Path:
    (tmp_path / "forever.j2").write_text(FOREVER)
    (tmp_path / "huge.j2").write_text(HUGE)
    (tmp_path / "good.j2").write_text("a={{ params.a }}\n")
    return write_file_source(
        tmp_path,
        '"/app/a" = "one"\n',
        refresh={"interval": "200ms", "jitter": 0.0},
        http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
        files={
            "dir": "params",
            "template_timeout": timeout,
            "template": [
                {"source": "forever.j2", "path": "forever.conf"},
                {"source": "huge.j2", "path": "huge.conf"},
                {"source": "good.j2", "path": "good.conf"},
            ],
        },
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _holds(path: Path, text: str) -> Callable[[], bool]:
    return lambda: _read(path) == text


def _post(url: str, token: str) -> int:
    headers = {"X-Aws-Parameters-Secrets-Token": token}
    request = urllib.request.Request(url, method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 (loopback)
        status: int = reply.status
        return status


def _failures(agent: AgentProcess, template: str) -> list[dict[str, Any]]:
    return [
        e
        for e in agent.events()
        if e.get("event") == "template_failed" and e.get("template") == template
    ]


def test_the_agent_keeps_serving_and_cycling_with_a_hostile_template(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port, "1s")
    base = f"http://127.0.0.1:{port}"
    with AgentProcess("run", "-c", str(config), cwd=tmp_path) as agent:
        params = tmp_path / "params"
        wait_until(lambda: _read(params / "good.conf") == "a=one\n", 30, what="first set")
        assert _read(params / "a") == "one"
        assert not (params / "forever.conf").exists() and not (params / "huge.conf").exists()
        assert (
            "took longer than files.template_timeout (1s)"
            in _failures(agent, "forever.conf")[0]["reason"]
        )
        assert "larger than files.template_max_bytes" in _failures(agent, "huge.conf")[0]["reason"]

        # Every later change is written too, each time past the hostile renders.
        for value in ("two", "three"):
            write_atomic(tmp_path / "values.toml", f'"/app/a" = "{value}"\n')
            assert http_get(f"{base}/ping") == (200, "healthy")
            wait_until(_holds(params / "good.conf", f"a={value}\n"), 30, what=value)
            assert _read(params / "a") == value
        token = (tmp_path / "token").read_text().strip()
        assert _post(f"{base}/v1/refresh", token) == 200
        metrics = http_get(f"{base}/metrics")[1]
        assert (
            metric_value(metrics, "ssm_sidecar_template_errors_total", template="forever.conf") >= 3
        )
        assert metric_value(metrics, "ssm_sidecar_template_errors_total", template="huge.conf") >= 3
        assert metric_value(metrics, "ssm_sidecar_template_errors_total", template="good.conf") == 0
    assert agent.proc.returncode == 0


def test_sigterm_ends_the_agent_at_once_in_the_middle_of_a_render(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port, "10m")
    with AgentProcess("run", "-c", str(config), cwd=tmp_path) as agent:
        agent.wait_for_event("started")
        assert http_get(f"http://127.0.0.1:{port}/ping") == (200, "healthy")
        # The first set's render of forever.j2 is under way once the agent burns CPU.
        start = cpu_seconds(agent.pid)
        wait_until(lambda: cpu_seconds(agent.pid) > start + 1.0, 60, what="a render running")
        assert http_get(f"http://127.0.0.1:{port}/ping") == (200, "healthy")
        sent = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        took = time.monotonic() - sent
    assert took < 2.0, f"the agent took {took:.2f}s to exit after SIGTERM"
    assert "cancelled: the agent is stopping" in _failures(agent, "forever.conf")[0]["reason"]
