"""`ssm-sidecar get NAME` against a running `ssm-sidecar run` process (moto behind it)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.support.builders import serving_config, write_config
from tests.support.moto import free_port
from tests.support.processes import AgentProcess, agent_command

VALUE = "raw value: no newline added, ünïcode, 'quotes' $HOME"


def _config(tmp_path: Path, moto_url: str, listen: str) -> Path:
    config = serving_config(moto_url, listen, parameters=[{"path": "/e2e"}])
    return write_config(tmp_path / "config.toml", config)


def get(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(agent_command("get", *args), capture_output=True, timeout=30)


def one_line(err: bytes) -> str:
    text = err.decode()
    assert text.count("\n") == 1, text
    return text


def test_get_prints_the_raw_value_and_fails_clearly(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/e2e/secret", Value=VALUE, Type="SecureString")
    config = _config(tmp_path, moto_url, f"127.0.0.1:{free_port()}")
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("ready")
        agent.wait_for_event("http_listening")

        found = get("/e2e/secret", "-c", str(config))
        assert found.returncode == 0, found.stderr
        assert found.stdout == VALUE.encode()

        unknown = get("/e2e/nothing", "-c", str(config))
        assert unknown.returncode == 1
        assert unknown.stdout == b""
        message = one_line(unknown.stderr)
        assert message.startswith("ssm-sidecar: get: /e2e/nothing")
        assert "was not found in the parameter source" in message  # under path /e2e

        (tmp_path / "wrong").write_text("not-the-token")
        refused = get("/e2e/secret", "-c", str(config), "--token-file", str(tmp_path / "wrong"))
        assert refused.returncode == 1
        assert "refused the token" in one_line(refused.stderr)
        assert VALUE.encode() not in refused.stderr + refused.stdout
        assert VALUE not in agent.log_text()
        assert agent.stop() == 0

    down = get("/e2e/secret", "-c", str(config))
    assert down.returncode == 1
    assert down.stdout == b""
    assert "no agent answering at http://127.0.0.1:" in one_line(down.stderr)


def test_check_refuses_a_non_loopback_listen(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:1", "0.0.0.0:2773")
    result = subprocess.run(
        agent_command("check", "-c", str(config)), capture_output=True, timeout=30
    )
    assert result.returncode == 2
    err = one_line(result.stderr)
    assert "http.listen" in err and "loopback" in err


def test_run_exits_1_when_the_listen_address_is_taken(moto_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, moto_url, f"127.0.0.1:{port}")
        result = subprocess.run(
            agent_command("run", "-c", str(config)), capture_output=True, timeout=30
        )
    assert result.returncode == 1
    last = result.stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"ssm-sidecar: http.listen: cannot listen on 127.0.0.1:{port}")
