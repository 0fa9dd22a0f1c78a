"""Local peers against the real agent: a client run as uid `nobody` (setpriv) gets 403 and no
value on every route of the API listener and on the AWS SDK protocol, even with the right token;
a listed uid gets its answers; the SDK protocol is off unless http.aws_protocols turns it on; and
`check` refuses the protocol on TCP without http.allowed_uids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import serving_config, write_config
from tests.support.moto import free_port
from tests.support.processes import REPO, AgentProcess, agent_command

NOBODY = 65534
SECRET = "peer-s3cret-plaintext"
SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = REPO / "tests" / "support" / "peer_client.py"


def _as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run(
        _as_nobody([SYSTEM_PYTHON, "-c", "import os; print(os.getuid())"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return probe.returncode == 0 and probe.stdout.strip() == str(NOBODY)


needs_root = pytest.mark.skipif(
    not _nobody_can_run_python(),
    reason="needs root, setpriv and a system python3 that uid 65534 can run",
)


@pytest.fixture
def client_dir() -> Iterator[Path]:
    """The client script in a directory uid nobody can read (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ssm-sidecar-peer-"))
    try:
        path.chmod(0o755)
        shutil.copy(CLIENT, path / "peer_client.py")
        (path / "peer_client.py").chmod(0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _config(tmp_path: Path, moto_url: str, listen: str, **http: Any) -> Path:
    config = serving_config(moto_url, listen, parameters=[{"path": "/peer"}], http=http)
    return write_config(tmp_path / "config.toml", config)


def run_client(client_dir: Path, address: str, token: str, *, uid: int) -> list[dict[str, Any]]:
    argv = [SYSTEM_PYTHON, str(client_dir / "peer_client.py"), address, token]
    if uid != os.getuid():
        argv = _as_nobody(argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def start_agent(config: Path) -> AgentProcess:
    agent = AgentProcess("run", "-c", str(config))
    agent.wait_for_event("http_listening")
    agent.wait_for_event("ready")
    return agent


@needs_root
@pytest.mark.parametrize("listener", ["tcp", "tcp6", "unix"])
def test_an_unlisted_uid_gets_403_and_no_value_on_every_route(
    ssm: Any, moto_url: str, tmp_path: Path, client_dir: Path, listener: str
) -> None:
    ssm.put_parameter(Name="/peer/secret", Value=SECRET, Type="SecureString")
    port = free_port()
    listen = {
        "tcp": f"127.0.0.1:{port}",
        "tcp6": f"[::1]:{port}",
        "unix": f"unix:{client_dir / 'agent.sock'}",
    }[listener]
    extra = {"aws_protocols": ["ssm"], "allowed_uids": [os.getuid()]}
    with start_agent(_config(tmp_path, moto_url, listen, **extra)) as agent:
        if listener == "unix":  # the socket is 0660: let nobody connect, to meet the uid check
            (client_dir / "agent.sock").chmod(0o666)
        # The right token: the uid check holds even for a user who got hold of it.
        token = (tmp_path / "run" / "token").read_text()

        refused = run_client(client_dir, listen, token, uid=NOBODY)
        assert len(refused) == 11
        for answer in refused:
            assert answer["status"] == 403, answer
            body = json.loads(answer["body"])
            assert body["__type"] == "AccessDeniedException"
            assert f"uid {NOBODY} " in body["message"]
            assert SECRET not in answer["body"]

        served = {
            (a["method"], a["path"], a.get("target")): a
            for a in run_client(client_dir, listen, token, uid=os.getuid())
        }
        assert {a["status"] for k, a in served.items() if k[1] != "/no/such/endpoint"} == {200}
        assert served[("GET", "/no/such/endpoint", None)]["status"] == 404
        assert served[("GET", "/v1/parameters/peer/secret", None)]["body"] == SECRET
        by_path = json.loads(served[("POST", "/", "GetParametersByPath")]["body"])
        assert [p["Value"] for p in by_path["Parameters"]] == [SECRET]
        assert SECRET not in agent.log_text()


def test_the_sdk_protocol_is_off_by_default(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/peer/secret", Value=SECRET, Type="SecureString")
    listen = f"127.0.0.1:{free_port()}"
    with start_agent(_config(tmp_path, moto_url, listen)):
        done = subprocess.run(
            [SYSTEM_PYTHON, str(CLIENT), listen, (tmp_path / "run" / "token").read_text()],
            capture_output=True,
            text=True,
            timeout=60,
        )
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        sdk = [a for a in answers if a["path"] == "/"]
        assert len(sdk) == 2
        for answer in sdk:
            assert answer["status"] == 400
            body = json.loads(answer["body"])
            assert body["__type"] == "UnknownOperationException"
            assert "http.aws_protocols" in body["message"]
            assert SECRET not in answer["body"]
        # Without allowed_uids every local user keeps the token routes (the token guards them).
        assert any(a["body"] == SECRET for a in answers)


def test_check_refuses_the_sdk_protocol_on_tcp_without_allowed_uids(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "http://127.0.0.1:1", f"127.0.0.1:{free_port()}", aws_protocols=["ssm"]
    )
    for command in ("check", "run"):
        done = subprocess.run(
            agent_command(command, "-c", str(config)),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert done.returncode == 2, (command, done.stderr)
        assert f"{config}: http.allowed_uids: required" in done.stderr
    # Over a unix socket the socket file's mode decides who may connect: no uid list needed.
    unix = _config(
        tmp_path, "http://127.0.0.1:1", f"unix:{tmp_path / 'a.sock'}", aws_protocols=["ssm"]
    )
    done = subprocess.run(
        agent_command("check", "-c", str(unix)), capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
