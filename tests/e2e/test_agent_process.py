"""The real `ssm-sidecar` process: the README's front door, clean shutdown, once, no leaks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import write_file_source
from tests.support.fault_proxy import FaultProxy
from tests.support.moto import free_port
from tests.support.processes import REPO, AgentProcess, agent_command
from tests.support.waiting import wait_until

JSON_LOGS = {"format": "json"}
NO_AWS = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}


def _env_without_aws() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return env


def test_readme_names_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:.*\n\t.*ssm-sidecar run -c config\.example\.toml$", makefile, re.M)
    assert re.search(r"^test:.*\n\t.*pytest$", makefile, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


def test_readme_run_command_starts_on_the_file_source_without_aws(tmp_path: Path) -> None:
    """What `make run` runs, from a copy of the example (its own port, its own run/ dir)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    text = (REPO / "config.example.toml").read_text()
    text = text.replace("127.0.0.1:2773", f"127.0.0.1:{free_port()}")
    (tmp_path / "config.example.toml").write_text(text)
    env = _env_without_aws()
    with AgentProcess(
        command=[*agent_command("run", "-c", "config.example.toml")], cwd=tmp_path, env=env
    ) as agent:
        wait_until(lambda: "ready" in agent.log_text(), 20, what="agent ready")
        assert agent.proc.poll() is None
        agent.signal(signal.SIGTERM)
        assert agent.wait(5) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_run_cleanly_within_2s(tmp_path: Path, sig: signal.Signals) -> None:
    config = write_file_source(tmp_path, '"/app/a" = "x"\n', log=JSON_LOGS)
    with AgentProcess("run", "-c", str(config), env=_env_without_aws()) as agent:
        agent.wait_for_event("ready")
        started = time.monotonic()
        agent.signal(sig)
        assert agent.wait(5) == 0
        assert time.monotonic() - started < 2.0
        assert any(e["event"] == "stopped" for e in agent.events())


def test_sigterm_during_a_hung_ssm_call_ends_within_2s(
    moto_url: str, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    fault_proxy.add_fault(None, "delay", delay=30)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[source]\nendpoint_url = "{fault_proxy.url}"\nregion = "us-east-1"\ntimeout = "60s"\n'
        '[[parameters]]\npath = "/app"\n[http]\nenabled = false\n'
    )
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("started")
        wait_until(lambda: fault_proxy.arrivals() >= 1, 10, what="a call in flight")
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.wait(5) == 0
        assert time.monotonic() - started < 2.0


def test_once_exits_1_naming_the_missing_required_parameter(tmp_path: Path) -> None:
    config = write_file_source(
        tmp_path,
        '"/app/a" = "x"\n',
        parameters=[{"path": "/app"}, {"name": "/db/password"}],
        log=JSON_LOGS,
    )
    proc = subprocess.run(
        agent_command("once", "-c", str(config)), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "/db/password" in proc.stderr.splitlines()[-1]


def test_once_exits_0_when_complete(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/app/a", Value="x", Type="String")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[source]\nendpoint_url = "{moto_url}"\nregion = "us-east-1"\n'
        '[[parameters]]\npath = "/app"\n[http]\nenabled = false\n'
    )
    proc = subprocess.run(
        agent_command("once", "-c", str(config)), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr


def test_once_exits_1_when_the_source_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[source]\nendpoint_url = "http://127.0.0.1:{free_port()}"\nregion = "us-east-1"\n'
        'max_attempts = 1\ntimeout = "2s"\n[[parameters]]\npath = "/app"\n[http]\nenabled = false\n'
    )
    proc = subprocess.run(
        agent_command("once", "-c", str(config)), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "GetParametersByPath failed" in proc.stderr


def test_nothing_the_agent_logs_contains_a_value(
    ssm: Any, kms_key_id: str, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """A scenario with every kind of event: load, change, throttling, access denied, KMS denied,
    delete. Then grep all the agent wrote for every value it ever held."""
    secrets: list[str] = []

    def put(name: str, kind: str = "SecureString", overwrite: bool = False) -> None:
        value = f"val-{uuid.uuid4().hex[:12]}"
        secrets.append(value)
        extra = {"KeyId": kms_key_id} if kind == "SecureString" else {}
        ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=overwrite, **extra)

    for n in ("db/password", "api/key", "plain"):
        put(f"/app/{n}", "String" if n == "plain" else "SecureString")
    put("/named/token")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[source]\nendpoint_url = "{fault_proxy.url}"\nregion = "us-east-1"\nmax_attempts = 1\n'
        '[[parameters]]\npath = "/app"\n[[parameters]]\nname = "/named/token"\n'
        '[refresh]\ninterval = "200ms"\nmax_backoff = "500ms"\n[http]\nenabled = false\n'
        '[log]\nlevel = "debug"\n'
    )
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("ready")
        put("/app/db/password", overwrite=True)
        agent.wait_for_event("parameter_changed", name="/app/db/password", new_version=2)
        fault_proxy.add_fault(None, "throttle", times=3)
        wait_until(
            lambda: (
                fault_proxy.count(include_faulted=True) > 0
                and any(e["event"] == "refresh_failed" for e in agent.events())
            ),
            10,
        )
        fault_proxy.clear_faults()
        fault_proxy.add_fault(
            "GetParameters",
            "error",
            code="AccessDeniedException",
            message="denied",
            match="/named/token",
        )
        fault_proxy.add_fault(
            "GetParameter",
            "error",
            code="AccessDeniedException",
            message="KMS denied",
            match="/app/api/key",
        )
        fault_proxy.add_fault(
            "GetParameters",
            "error",
            code="AccessDeniedException",
            message="KMS denied",
            match="/app/api/key",
        )
        put("/app/api/key", overwrite=True)
        agent.wait_for_event("parameter_failed", name="/app/api/key")
        agent.wait_for_event("parameter_failed", name="/named/token")
        fault_proxy.clear_faults()
        ssm.delete_parameter(Name="/app/plain")
        agent.wait_for_event("parameter_changed", name="/app/plain", change="removed")
    text = agent.log_text() + agent.stdout.decode()
    assert len(agent.events()) > 10
    leaked = [s for s in secrets if s in text]
    assert leaked == [], "values found in the agent's output"


def test_editing_the_source_file_applies_at_once(tmp_path: Path) -> None:
    config = write_file_source(
        tmp_path, '"/app/a" = "one"\n', refresh={"interval": "1h"}, log=JSON_LOGS
    )
    with AgentProcess("run", "-c", str(config), env=_env_without_aws()) as agent:
        agent.wait_for_event("ready")
        # The watcher starts beside the first load; until it runs, an edit can only be seen
        # by the next interval (1h here). So edit, the way editors do (write elsewhere, rename
        # over), until the agent reports the file changed.
        tmp = tmp_path / "values.toml.new"

        def edited_and_seen() -> bool:
            tmp.write_text('"/app/a" = "two"\n"/app/b" = "new"\n')
            tmp.replace(tmp_path / "values.toml")
            return any(e["event"] == "source_file_changed" for e in agent.events())

        wait_until(edited_and_seen, 10, interval=0.2)
        agent.wait_for_event("parameter_changed", name="/app/a", new_version=2, timeout=10)
        agent.wait_for_event("parameter_changed", name="/app/b", change="added", timeout=10)
