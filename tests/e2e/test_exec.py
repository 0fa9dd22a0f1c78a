"""Exec mode with the real agent and real children: start after the first load, restart with
new values in the environment, signals forwarded, the child's exit code, zombies reaped as PID 1."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import write_atomic, write_file_source
from tests.support.child_apps import (
    ENV_REPORTER,
    SIGNAL_RECORDER,
    count_prefix,
    process_state,
    read_lines,
    wait_for_line,
    write_app,
)
from tests.support.processes import AgentProcess, agent_command
from tests.support.waiting import wait_until

#: What every exec-mode config here has besides its [exec] table.
EXEC_MODE: dict[str, Any] = {
    "refresh": {"interval": "300ms", "jitter": 0.0, "max_backoff": "500ms"},
    "files": {"dir": "params"},
    "notify": {"debounce": "0s"},
}


def _exec(config: Path, *cmd: str, env: dict[str, str] | None = None) -> AgentProcess:
    return AgentProcess(command=agent_command("run", "-c", str(config), "--", *cmd), env=env)


def _first_env_pid(log: Path) -> int:
    lines = wait_until(lambda: [x for x in read_lines(log) if x.startswith("env ")], 15)
    return int(lines[0].split()[1])


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def test_restart_gives_the_new_child_the_new_value_in_its_environment(tmp_path: Path) -> None:
    config = write_file_source(
        tmp_path,
        '"/app/db/password" = "first-pass"\n',
        **EXEC_MODE,
        exec={"on_change": "restart", "env": True, "stop_timeout": "5s"},
    )
    log = tmp_path / "child.log"
    app = write_app(tmp_path, ENV_REPORTER)
    with _exec(config, sys.executable, str(app), str(log), "DB_PASSWORD") as agent:
        first = _first_env_pid(log)
        assert read_lines(log) == [f"env {first} first-pass"]
        write_atomic(tmp_path / "values.toml", '"/app/db/password" = "second-pass"\n')
        wait_until(lambda: any(x.endswith(" second-pass") for x in read_lines(log)), 15)
        lines = read_lines(log)
        second = int(lines[-1].split()[1])
        assert second != first
        assert lines == [f"env {first} first-pass", f"SIGTERM {first}", f"env {second} second-pass"]
        assert agent.proc.poll() is None
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    assert "first-pass" not in agent.log_text() and "second-pass" not in agent.log_text()


def test_a_child_that_ignores_sigterm_is_killed_after_stop_timeout(tmp_path: Path) -> None:
    config = write_file_source(
        tmp_path,
        '"/app/token" = "t1"\n',
        **EXEC_MODE,
        exec={"on_change": "restart", "env": True, "stop_timeout": "1s"},
    )
    log = tmp_path / "child.log"
    app = write_app(tmp_path, ENV_REPORTER)
    with _exec(config, sys.executable, str(app), str(log), "TOKEN", "ignore-term") as agent:
        first = _first_env_pid(log)
        write_atomic(tmp_path / "values.toml", '"/app/token" = "t2"\n')
        killed = agent.wait_for_event("child_killed", pid=first)
        restarting = agent.wait_for_event("child_restarting", pid=first)
        waited = (_at(killed) - _at(restarting)).total_seconds()
        assert 1.0 <= waited < 4.0, waited
        assert f"SIGTERM {first}" in read_lines(log), "SIGTERM was tried first"
        wait_until(lambda: any(x.endswith(" t2") for x in read_lines(log)), 15)
        second = int(read_lines(log)[-1].split()[1])
        # A forwarded SIGTERM gets the same stop_timeout before SIGKILL.
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 128 + signal.SIGKILL
        agent.wait_for_event("child_killed", pid=second)
    assert process_state(first) is None and process_state(second) is None


def test_sigterm_reaches_the_child_and_the_agent_exits_with_its_code(tmp_path: Path) -> None:
    config = write_file_source(tmp_path, '"/app/a" = "x"\n', **EXEC_MODE, exec={})
    log = tmp_path / "child.log"
    app = write_app(tmp_path, SIGNAL_RECORDER)
    with _exec(config, sys.executable, str(app), str(log), env={"EXIT_ON_TERM": "7"}) as agent:
        wait_until(lambda: count_prefix(log, "ready"), 15, what="child ready")
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGINT):
            agent.signal(sig)
            wait_for_line(log, f"{sig.name} 1")
        agent.signal(signal.SIGHUP)  # the agent's own: reload, not forwarded
        agent.wait_for_event("reload_requested")
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 7
    assert "SIGTERM 1" in read_lines(log)
    assert count_prefix(log, "SIGHUP") == 0


def test_a_child_killed_by_a_signal_gives_128_plus_n(tmp_path: Path) -> None:
    config = write_file_source(tmp_path, '"/app/a" = "x"\n', **EXEC_MODE, exec={})
    with _exec(config, "sh", "-c", "kill -KILL $$") as agent:
        assert agent.wait(30) == 128 + signal.SIGKILL
    exited = [e for e in agent.events() if e.get("event") == "child_exited"]
    assert exited and exited[0]["exit_code"] == 137


def test_the_child_starts_only_after_the_first_complete_load(tmp_path: Path) -> None:
    config = write_file_source(
        tmp_path,
        '"/app/other" = "o"\n',
        **EXEC_MODE,
        exec={},
        parameters=[{"path": "/app"}, {"name": "/needed/key", "alias": "needed"}],
    )
    log = tmp_path / "child.log"
    script = f"cat params/needed > {log}; exec sleep 60"
    with AgentProcess(
        command=agent_command("run", "-c", str(config), "--", "sh", "-c", script), cwd=tmp_path
    ) as agent:
        agent.wait_for_event("load_incomplete")
        assert not log.exists()
        assert not any(e.get("event") == "child_started" for e in agent.events())
        write_atomic(tmp_path / "values.toml", '"/app/other" = "o"\n"/needed/key" = "here"\n')
        wait_until(lambda: read_lines(log) == ["here"], 15, what="child read its file")
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 128 + signal.SIGTERM  # sleep killed by the forwarded SIGTERM


def test_sigterm_before_the_first_load_stops_the_agent_without_a_child(tmp_path: Path) -> None:
    config = write_file_source(
        tmp_path,
        '"/app/a" = "x"\n',
        **EXEC_MODE,
        exec={},
        parameters=[{"name": "/never/there", "alias": "n"}],
    )
    with _exec(config, "sh", "-c", "echo started > child-ran") as agent:
        agent.wait_for_event("load_incomplete")
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 128 + signal.SIGTERM
    assert not any(e.get("event") == "child_started" for e in agent.events())


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_as_pid_1_the_agent_reaps_orphans_and_still_exits_with_the_childs_code(
    tmp_path: Path,
) -> None:
    config = write_file_source(tmp_path, '"/app/a" = "x"\n', **EXEC_MODE, exec={})
    # The child leaves an orphan: sh starts `sleep` in the background and exits at once, so
    # `sleep` is re-parented to PID 1 (the agent) and becomes its zombie when it ends.
    child = (
        "import subprocess, sys, time\n"
        "subprocess.run(['sh', '-c', 'sleep 0.5 &'])\n"
        "time.sleep(60)\n"
    )
    cmd = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        *agent_command("run", "-c", str(config), "--", sys.executable, "-c", child),
    ]
    with AgentProcess(command=cmd) as wrapper:
        agent = int(wait_until(lambda: _children(wrapper.pid), 15)[0])
        orphan = wait_until(
            lambda: [p for p in _children(agent) if _comm(p) == "sleep"], 15, what="the orphan"
        )[0]
        # Without the reaper the orphan would stay a zombie until the agent exits.
        wait_until(lambda: process_state(orphan) is None, 15, what="orphan reaped")
        assert wrapper.proc.poll() is None
        wait_until(lambda: any(e.get("event") == "reaper_started" for e in wrapper.events()), 5)
        os.kill(agent, signal.SIGTERM)
        assert wrapper.wait(15) == 128 + signal.SIGTERM  # python child killed by SIGTERM


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
