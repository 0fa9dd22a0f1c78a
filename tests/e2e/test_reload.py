"""Config reload in the real agent against moto: edits of the file apply live, a broken file
keeps the running config and says why, SIGHUP reloads and refreshes at once."""

from __future__ import annotations

import copy
import signal
import uuid
from pathlib import Path
from typing import Any

from tests.support.builders import agent_config, ssm_source, write_config
from tests.support.child_apps import http_get
from tests.support.moto import free_port
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until


def _config(tmp_path: Path, moto_url: str, port: int, interval: str) -> dict[str, Any]:
    return agent_config(
        ssm_source(moto_url),
        refresh={"interval": interval, "jitter": 0.0, "max_backoff": "1s"},
        http={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")},
        files={"dir": str(tmp_path / "params")},
    )


class Api:
    def __init__(self, port: int, token_file: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token_file = token_file

    def value(self, name: str) -> tuple[int, str]:
        return http_get(f"{self.base}/v1/parameters{name}", self.token_file.read_text().strip())


def _until_served(api: Api, name: str, value: str, timeout: float = 15) -> None:
    wait_until(lambda: api.value(name) == (200, value), timeout, what=f"{name} served")


def _rewrite_until(path: Path, data: dict[str, Any], done: Any, what: str) -> None:
    """Write the config until `done()` holds: the agent's file watcher starts shortly after
    `ready`, so an edit made before that is repeated (the same bytes change nothing)."""

    def applied() -> bool:
        write_config(path, data)
        return bool(done())

    wait_until(applied, 20, interval=0.3, what=what)


def test_adding_a_path_on_disk_applies_without_a_restart(
    tmp_path: Path, ssm: Any, moto_url: str
) -> None:
    ssm.put_parameter(Name="/app/a", Value="alpha-1", Type="String")
    ssm.put_parameter(Name="/more/b", Value="beta-1", Type="SecureString")
    port = free_port()
    path = tmp_path / "config.toml"
    data = _config(tmp_path, moto_url, port, "30s")
    write_config(path, data)
    api = Api(port, tmp_path / "token")
    with AgentProcess("run", "-c", str(path)) as agent:
        agent.wait_for_event("ready")
        _until_served(api, "/app/a", "alpha-1")
        assert api.value("/more/b")[0] == 404
        pid = agent.pid
        bigger = copy.deepcopy(data)
        bigger["parameters"].append({"path": "/more"})
        _rewrite_until(path, bigger, lambda: api.value("/more/b")[0] == 200, "new path served")
        assert api.value("/more/b") == (200, "beta-1")
        assert (tmp_path / "params" / "b").read_text() == "beta-1"
        assert api.value("/app/a") == (200, "alpha-1"), "the old path is still served"
        reloaded = agent.wait_for_event("config_reloaded")
        assert reloaded["changed"] == ["source"]
        assert agent.pid == pid and agent.proc.poll() is None
        assert sum(e.get("event") == "ready" for e in agent.events()) == 1, "never unready"
    assert "beta-1" not in agent.log_text() and "alpha-1" not in agent.log_text()


def test_a_broken_file_keeps_the_running_config_and_logs_why(
    tmp_path: Path, ssm: Any, moto_url: str
) -> None:
    ssm.put_parameter(Name="/app/a", Value="alpha-1", Type="String")
    port = free_port()
    path = tmp_path / "config.toml"
    data = _config(tmp_path, moto_url, port, "300ms")
    write_config(path, data)
    api = Api(port, tmp_path / "token")
    with AgentProcess("run", "-c", str(path)) as agent:
        agent.wait_for_event("ready")
        _until_served(api, "/app/a", "alpha-1")
        broken = copy.deepcopy(data)
        broken["refresh"]["interval"] = "often"

        def failed() -> bool:
            write_config(path, broken)
            return any(e.get("event") == "config_reload_failed" for e in agent.events())

        wait_until(failed, 20, interval=0.3, what="config_reload_failed logged")
        event = agent.wait_for_event("config_reload_failed")
        assert f"{path}: refresh.interval:" in event["error"]
        assert event["level"] == "error"
        # Still running on the old config: serving, and refreshing every 300ms.
        assert agent.proc.poll() is None
        ssm.put_parameter(Name="/app/a", Value="alpha-2", Type="String", Overwrite=True)
        _until_served(api, "/app/a", "alpha-2")
        # Fixing the file applies it again.
        fixed = copy.deepcopy(data)
        fixed["parameters"] = [{"path": "/app"}, {"name": "/solo/c", "alias": "c"}]
        ssm.put_parameter(Name="/solo/c", Value="gamma-1", Type="String")
        _rewrite_until(path, fixed, lambda: api.value("/solo/c")[0] == 200, "fixed config")
        assert (tmp_path / "params" / "c").read_text() == "gamma-1"


def test_sighup_reloads_and_refreshes_now(tmp_path: Path, ssm: Any, moto_url: str) -> None:
    ssm.put_parameter(Name="/app/a", Value="alpha-1", Type="String")
    port = free_port()
    path = tmp_path / "config.toml"
    write_config(path, _config(tmp_path, moto_url, port, "1h"))
    api = Api(port, tmp_path / "token")
    with AgentProcess("run", "-c", str(path)) as agent:
        agent.wait_for_event("ready")
        _until_served(api, "/app/a", "alpha-1")
        value = f"alpha-{uuid.uuid4().hex[:6]}"
        ssm.put_parameter(Name="/app/a", Value=value, Type="String", Overwrite=True)
        agent.signal(signal.SIGHUP)
        # With a 1h interval only the SIGHUP's refresh can bring it in.
        _until_served(api, "/app/a", value, timeout=10)
        agent.wait_for_event("reload_requested")
        assert agent.proc.poll() is None
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
