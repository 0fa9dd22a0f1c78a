"""Exec mode: the app started by the agent does not inherit the agent's AWS credentials (least
privilege: the agent's role reads every configured parameter, the app should not), unless
`exec.pass_aws_credentials = true`. Region, endpoint and profile settings still reach it, and a
parameter put in its environment by `exec.env` may be its own key."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.support.builders import write_file_source
from tests.support.child_apps import write_app
from tests.support.processes import AgentProcess, agent_command
from tests.support.waiting import wait_until

# Writes its whole environment as JSON to argv[1], then waits for SIGTERM.
ENV_DUMP = r"""
import json, os, signal, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(dict(os.environ), f)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
"""

AGENT_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAAGENTEXAMPLE0001",
    "AWS_SECRET_ACCESS_KEY": "agent-secret-access-key",
    "AWS_SESSION_TOKEN": "agent-session-token",
    "AWS_SECURITY_TOKEN": "agent-legacy-token",
    "AWS_CREDENTIAL_EXPIRATION": "2030-01-01T00:00:00Z",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/agent-reader",
    "AWS_ROLE_SESSION_NAME": "agent",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/agent",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "agent-container-token",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/secrets/pods.eks.amazonaws.com/token",
}
KEPT = {
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:2773",
    "AWS_PROFILE": "app",
    "APP_SETTING": "kept",
}


def _run(tmp_path: Path, exec_: dict[str, Any], values: str = '"/app/a" = "x"\n') -> dict[str, str]:
    config = write_file_source(tmp_path, values, exec=exec_)
    app = write_app(tmp_path, ENV_DUMP)
    seen = tmp_path / "child-env.json"
    command = agent_command("run", "-c", str(config), "--", sys.executable, str(app), str(seen))
    with AgentProcess(command=command, env={**AGENT_CREDENTIALS, **KEPT}) as agent:
        wait_until(seen.exists, 15, what="the child wrote its environment")
        env: dict[str, str] = json.loads(seen.read_text())
    assert agent.proc.returncode == 0, agent.log_text()
    return env


def test_the_child_gets_no_aws_credentials_by_default(tmp_path: Path) -> None:
    env = _run(tmp_path, {})
    assert sorted(set(AGENT_CREDENTIALS) & set(env)) == []
    assert {k: env.get(k) for k in KEPT} == KEPT


def test_pass_aws_credentials_hands_them_on(tmp_path: Path) -> None:
    env = _run(tmp_path, {"pass_aws_credentials": True})
    assert {k: env.get(k) for k in AGENT_CREDENTIALS} == AGENT_CREDENTIALS
    assert {k: env.get(k) for k in KEPT} == KEPT


def test_a_parameter_in_the_environment_may_be_the_apps_own_key(tmp_path: Path) -> None:
    env = _run(
        tmp_path,
        {"env": True, "on_change": "restart"},
        values='"/app/aws_access_key_id" = "AKIAAPPEXAMPLE000001"\n',
    )
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAAPPEXAMPLE000001"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_SESSION_TOKEN" not in env
