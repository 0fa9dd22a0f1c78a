"""The real `ssm-sidecar` process writing files: `once` for init containers, `run` keeping up."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.support.builders import agent_config, ssm_source, write_config
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until

SECRET = 'e2e-secret-Value-$HOME-"q"'


def _config(tmp_path: Path, moto_url: str) -> Path:
    (tmp_path / "app.conf.j2").write_text('dsn={{ params["db/url"] }}\n')
    return write_config(
        tmp_path / "config.toml",
        agent_config(
            ssm_source(moto_url),
            refresh={"interval": "200ms", "jitter": 0.0, "max_backoff": "1s"},
            files={
                "dir": "params",
                "mode": "0440",
                "dir_mode": "0750",
                "bundle": [{"path": "app.env", "prefix": "/app"}],
                "template": [{"source": "app.conf.j2", "path": "conf/app.conf"}],
            },
            log={"format": "json"},
        ),
    )


def _seed(ssm: Any) -> None:
    ssm.put_parameter(Name="/app/db/url", Value="pg://one", Type="String")
    ssm.put_parameter(Name="/app/db/password", Value=SECRET, Type="SecureString")


def test_once_writes_the_whole_set_and_exits_0(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    _seed(ssm)
    config = _config(tmp_path, moto_url)
    agent = AgentProcess("once", "-c", str(config))
    assert agent.wait(30) == 0, agent.log_text()
    params = tmp_path / "params"
    assert (params / "db" / "url").read_bytes() == b"pg://one"
    assert (params / "db" / "password").read_bytes() == SECRET.encode()
    assert (params / "conf" / "app.conf").read_bytes() == b"dsn=pg://one\n"
    assert 'DB_PASSWORD="e2e-secret-Value-$HOME-\\"q\\""' in (params / "app.env").read_text()
    data = params / os.readlink(params / "..data")
    assert stat.S_IMODE((data / "db" / "password").stat().st_mode) == 0o440
    assert stat.S_IMODE((data / "conf").stat().st_mode) == 0o750
    assert any(e.get("event") == "files_written" for e in agent.events())
    assert SECRET not in agent.log_text()


def test_run_rewrites_the_set_after_a_change_and_leaves_it_on_exit(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    _seed(ssm)
    config = _config(tmp_path, moto_url)
    params = tmp_path / "params"
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("files_written", timeout=20)
        assert (params / "conf" / "app.conf").read_bytes() == b"dsn=pg://one\n"
        ssm.put_parameter(Name="/app/db/url", Value="pg://two", Type="String", Overwrite=True)
        ssm.delete_parameter(Name="/app/db/password")
        wait_until(
            lambda: (params / "conf" / "app.conf").read_bytes() == b"dsn=pg://two\n",
            15,
            what="template rewritten",
        )
        assert (params / "db" / "url").read_bytes() == b"pg://two"
        assert not (params / "db" / "password").exists()
        assert "DB_PASSWORD" not in (params / "app.env").read_text()
        assert agent.stop() == 0
    assert (params / "db" / "url").read_bytes() == b"pg://two"
    assert len([n for n in os.listdir(params) if n.startswith("..2")]) == 1
    assert SECRET not in agent.log_text()


def test_once_exits_1_naming_what_it_could_not_write(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    _seed(ssm)
    config = _config(tmp_path, moto_url)
    (tmp_path / "app.conf.j2").write_text('dsn={{ params["db/missing"] }}\n')
    agent = AgentProcess("once", "-c", str(config))
    assert agent.wait(30) == 1
    stderr = agent.log_text()
    assert "ssm-sidecar: files: template conf/app.conf: UndefinedError" in stderr
    assert "UndefinedError at line 1" in stderr and SECRET not in stderr
    # Everything else was still written.
    assert (tmp_path / "params" / "db" / "url").read_bytes() == b"pg://one"
    assert not (tmp_path / "params" / "conf").exists()
