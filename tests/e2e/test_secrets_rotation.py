"""Acceptance 3 with the real agent and a real exec child: a rotation (PutSecretValue) reaches
HTTP, the file and the signalled child within one poll cycle; a deleted secret disappears; a
secret the agent may no longer read keeps its last value while the others go on updating."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.builders import agent_config, ssm_source, write_config
from tests.support.child_apps import HUP_READER, http_get, read_lines, wait_for_line, write_app
from tests.support.fault_proxy import FaultProxy
from tests.support.http_api import metric_value
from tests.support.moto import free_port
from tests.support.processes import AgentProcess, agent_command
from tests.support.waiting import wait_until


def rotate_and_wait(sm: Any, proxy: FaultProxy, log: Path, name: str, value: str) -> None:
    """PutSecretValue, then wait for the child to see `value` in the file and over HTTP when
    signalled; at most two listing cycles may pass (the one in flight may have listed before
    the rotation; the next one must carry it)."""
    listed_before = proxy.count("ListSecrets")
    sm.put_secret_value(SecretId=name, SecretString=value)
    wait_for_line(log, f"{value} {value}", timeout=20)
    cycles = proxy.count("ListSecrets") - listed_before
    assert cycles <= 2, f"{value} took {cycles} listing cycles"


def test_rotation_deletion_and_denial_through_the_real_agent(
    secretsmanager: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    sm = secretsmanager
    for name, value in (("app/db", "pw-0"), ("app/old", "old-0"), ("app/denied", "d-0")):
        sm.create_secret(Name=name, SecretString=value)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "config.toml",
        agent_config(
            ssm_source(fault_proxy.url),
            parameters=None,
            secrets=[{"prefix": "app/"}],
            refresh={"interval": "1s", "jitter": 0.0, "max_backoff": "1s"},
            http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
            files={"dir": "params"},
            notify={"debounce": "100ms"},
        ),
    )
    log = tmp_path / "child.log"
    child = write_app(tmp_path, HUP_READER, "child.py")
    files = tmp_path / "params" / "app"
    argv = [str(log), str(files / "db"), f"{base}/v1/secrets/app/db", str(tmp_path / "token")]
    cmd = agent_command("run", "-c", str(config), "--", sys.executable, str(child), *argv)
    with AgentProcess(command=cmd) as agent:
        wait_for_line(log, "pw-0 pw-0", timeout=30)
        token = (tmp_path / "token").read_text().strip()

        # A rotation: served, written, then the child is signalled.
        rotate_and_wait(sm, fault_proxy, log, "app/db", "pw-1")

        # A deleted secret disappears from HTTP and from the files.
        sm.delete_secret(SecretId="app/old", ForceDeleteWithoutRecovery=True)
        wait_until(lambda: not (files / "old").exists(), 20, what="app/old file removed")
        assert http_get(f"{base}/v1/secrets/app/old", token)[0] == 404

        # app/denied can no longer be read: its last value stays, the others keep updating.
        for operation in ("BatchGetSecretValue", "GetSecretValue"):
            fault_proxy.add_fault(
                operation,
                "error",
                code="AccessDeniedException",
                message="User is not authorized to perform secretsmanager:GetSecretValue",
                match="secret:app/denied-",
            )
        sm.put_secret_value(SecretId="app/denied", SecretString="d-1")
        rotate_and_wait(sm, fault_proxy, log, "app/db", "pw-2")
        rotate_and_wait(sm, fault_proxy, log, "app/db", "pw-3")
        assert http_get(f"{base}/v1/secrets/app/denied", token) == (200, "d-0")
        assert (files / "denied").read_text() == "d-0"
        health = json.loads(http_get(f"{base}/healthz")[1])
        assert health["secrets"] == 2
        assert {"name": "app/denied", "code": "AccessDeniedException", "secret": True} in health[
            "errors"
        ]
        metrics = http_get(f"{base}/metrics")[1]
        denied = metric_value(
            metrics, "ssm_sidecar_secret_failures_total", code="AccessDeniedException"
        )
        assert denied >= 1
        assert metric_value(metrics, "ssm_sidecar_secret_changes_total", kind="removed") == 1
        ages = [
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "ssm_sidecar_secret_version_age_seconds"
            and sample.labels["name"] == "app/db"
        ]
        assert len(ages) == 1 and 0 <= ages[0] < 600

        # Allowed again: the held value catches up.
        fault_proxy.clear_faults()
        wait_until(
            lambda: http_get(f"{base}/v1/secrets/app/denied", token) == (200, "d-1"),
            20,
            what="app/denied updated once allowed",
        )
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    seen = [line.split() for line in read_lines(log)]
    assert all(from_file == from_http for from_file, from_http in seen), seen
    for value in ("pw-0", "pw-1", "pw-2", "pw-3", "d-0", "d-1", "old-0"):
        assert value not in agent.log_text(), f"{value} leaked into the agent's log"
