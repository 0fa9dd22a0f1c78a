"""The real `ssm-sidecar` process and its AWS region: resolved like the SDKs, or exit 2 naming it.

Every process here gets an environment with no AWS variable but the ones a test sets, no profile
file, and instance metadata disabled, so nothing leaves the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import write_config
from tests.support.moto import DUMMY_AWS_ENV
from tests.support.processes import REPO, AgentProcess, agent_command
from tests.support.waiting import wait_until


def _isolated_env(**aws: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_ACCESS_KEY_ID=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        AWS_SECRET_ACCESS_KEY=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        AWS_SESSION_TOKEN=DUMMY_AWS_ENV["AWS_SESSION_TOKEN"],
        PYTHONUNBUFFERED="1",
    )
    env.update(aws)
    return env


def _config(tmp_path: Path, endpoint_url: str = "http://127.0.0.1:9") -> Path:
    data: dict[str, Any] = {
        "source": {"type": "ssm", "endpoint_url": endpoint_url, "max_attempts": 1},
        "parameters": [{"path": "/app"}],
        "http": {"enabled": False},
        "files": {"dir": str(tmp_path / "params")},
    }
    return write_config(tmp_path / "config.toml", data)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent_command(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("command", ["check", "once", "run"])
def test_no_region_anywhere_is_exit_2_naming_source_region(tmp_path: Path, command: str) -> None:
    config = _config(tmp_path)
    done = _cli(_isolated_env(), command, "-c", str(config))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]], "one line"
    assert lines[0].startswith(f"{config}: source.region: "), lines
    assert "AWS_REGION" in lines[0]
    assert "Traceback" not in done.stderr


def test_aws_region_alone_is_enough_for_once(tmp_path: Path, ssm: Any, moto_url: str) -> None:
    ssm.put_parameter(Name="/app/greeting", Value="hello-region", Type="String")
    config = _config(tmp_path, moto_url)
    done = _cli(_isolated_env(AWS_REGION="us-east-1"), "once", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "params" / "greeting").read_text() == "hello-region"


def test_aws_region_alone_is_enough_for_run(
    tmp_path: Path, ssm: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssm.put_parameter(Name="/app/greeting", Value="hello-run", Type="String")
    config = _config(tmp_path, moto_url)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    with AgentProcess("run", "-c", str(config), env=_isolated_env(AWS_REGION="us-east-1")) as agent:
        started = agent.wait_for_event("ready")
        assert started["parameters"] == 1
        assert (tmp_path / "params" / "greeting").read_text() == "hello-run"
        assert any(e.get("region") == "us-east-1" for e in agent.events())


def test_a_reload_to_a_config_without_region_keeps_the_running_one_and_the_loop(
    tmp_path: Path, ssm: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssm.put_parameter(Name="/app/greeting", Value="hello-1", Type="String")
    data: dict[str, Any] = {
        "source": {"type": "ssm", "region": "us-east-1", "endpoint_url": moto_url},
        "parameters": [{"path": "/app"}],
        "refresh": {"interval": "300ms", "jitter": 0.0, "max_backoff": "1s"},
        "http": {"enabled": False},
        "files": {"dir": str(tmp_path / "params")},
    }
    config = write_config(tmp_path / "config.toml", data)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    with AgentProcess("run", "-c", str(config), env=_isolated_env()) as agent:
        agent.wait_for_event("ready")
        broken = {**data, "source": {"type": "ssm", "endpoint_url": moto_url}}
        write_config(config, broken)
        agent.signal(signal.SIGHUP)
        failed = agent.wait_for_event("config_reload_failed")
        assert "source.region" in failed["error"]
        ssm.put_parameter(Name="/app/greeting", Value="hello-2", Type="String", Overwrite=True)
        greeting = tmp_path / "params" / "greeting"
        wait_until(lambda: greeting.read_text() == "hello-2", 10, what="the loop is alive")
        assert agent.proc.poll() is None
