"""The real agent tells real apps: after the files, one signal per debounce window, found by
pid_file, by process name, or as the exec child."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.builders import (
    agent_config,
    ssm_source,
    write_atomic,
    write_config,
    write_file_source,
)
from tests.support.child_apps import (
    HUP_READER,
    SIGNAL_RECORDER,
    count_prefix,
    read_lines,
    start_named_app,
    start_recorder,
    stop_app,
    wait_for_line,
    write_app,
)
from tests.support.moto import free_port
from tests.support.processes import AgentProcess, agent_command
from tests.support.waiting import wait_until

FIRST_VALUE = '"/app/key" = "value-1"\n'
#: Every file-source config here: values in files.dir, then [notify] as the test gives it.
FILES: dict[str, Any] = {"refresh": {"interval": "30s"}, "files": {"dir": "params"}}


def _set_value(tmp_path: Path, value: str) -> None:
    write_atomic(tmp_path / "values.toml", f'"/app/key" = "{value}"\n')


def _change_value(agent: AgentProcess, tmp_path: Path, value: str, version: int) -> None:
    """Edit the source file until the agent has loaded `version` of /app/key. The agent's file
    watcher starts shortly after `ready`, so the first edit is repeated (same bytes, so no extra
    version) until it is seen."""

    def seen() -> bool:
        _set_value(tmp_path, value)
        return any(
            e.get("event") == "parameter_changed" and e.get("new_version") == version
            for e in agent.events()
        )

    wait_until(seen, 15, interval=0.2, what=f"agent loaded version {version}")


def test_exec_child_sees_each_of_20_updates_in_its_file_and_over_http(
    tmp_path: Path, ssm: Any, moto_url: str
) -> None:
    name = "/app/db/password"
    ssm.put_parameter(Name=name, Value="initial-0", Type="SecureString")
    port = free_port()
    config = write_config(
        tmp_path / "config.toml",
        agent_config(
            ssm_source(moto_url),
            refresh={"interval": "300ms", "jitter": 0.0, "max_backoff": "1s"},
            http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
            files={"dir": "params"},
            notify={"debounce": "100ms"},
        ),
    )
    log = tmp_path / "child.log"
    child = write_app(tmp_path, HUP_READER, "child.py")
    url = f"http://127.0.0.1:{port}/v1/parameters{name}"
    argv = [str(log), str(tmp_path / "params" / "db" / "password"), url, str(tmp_path / "token")]
    values = [f"value-{i}-{uuid.uuid4().hex[:8]}" for i in range(1, 21)]
    cmd = agent_command("run", "-c", str(config), "--", sys.executable, str(child), *argv)
    with AgentProcess(command=cmd) as agent:
        wait_for_line(log, "initial-0 initial-0", timeout=30)
        for value in values:
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
            wait_for_line(log, f"{value} {value}", timeout=15)
        assert agent.proc.poll() is None
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    seen = [line.split() for line in read_lines(log)]
    assert all(from_file == from_http for from_file, from_http in seen), seen
    assert [v for v, _ in seen if v in values] == values, "each update seen, in order"
    assert len([e for e in agent.events() if e.get("event") == "notify_sent"]) >= 20
    for value in [*values, "initial-0"]:
        assert value not in agent.log_text(), "a value leaked into the agent's log"


def test_ten_updates_inside_one_debounce_window_give_exactly_one_signal(tmp_path: Path) -> None:
    app, log = start_recorder(tmp_path)
    try:
        (tmp_path / "app.pid").write_text(str(app.pid))
        config = write_file_source(
            tmp_path, FIRST_VALUE, **FILES, notify={"pid_file": "app.pid", "debounce": "4s"}
        )
        with AgentProcess("run", "-c", str(config)) as agent:
            agent.wait_for_event("files_written")
            for version in range(2, 12):
                _change_value(agent, tmp_path, f"value-{version}", version)
            wait_for_line(log, "SIGHUP 1")
            sent = agent.wait_for_event("notify_sent")
            assert sent["changes"] == 10, "all ten changes fell inside the window"
            assert sent["pids"] == [app.pid]
            # Nothing is pending now, so stopping sends nothing more: once the agent has
            # exited, every signal it ever sent is already pending at the app or handled.
            agent.signal(signal.SIGTERM)
            assert agent.wait(15) == 0
        app.send_signal(signal.SIGUSR1)  # handled after any SIGHUP (lower number first)
        wait_for_line(log, "SIGUSR1 1")
        # Also proves the first load sent nothing: it would have been a second SIGHUP.
        assert count_prefix(log, "SIGHUP") == 1
        assert sum(e.get("event") == "notify_sent" for e in agent.events()) == 1
        assert (tmp_path / "params" / "key").read_text() == "value-11"
    finally:
        stop_app(app)


def test_process_name_finds_an_app_started_separately(tmp_path: Path) -> None:
    name = f"app-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "app.log"
    app = start_named_app(name, SIGNAL_RECORDER, str(log))
    try:
        wait_for_line(log, f"ready {app.pid}")
        config = write_file_source(
            tmp_path, FIRST_VALUE, **FILES, notify={"process": name, "debounce": "0s"}
        )
        with AgentProcess("run", "-c", str(config)) as agent:
            agent.wait_for_event("files_written")
            _change_value(agent, tmp_path, "value-2", 2)
            wait_for_line(log, "SIGHUP 1")
            sent = agent.wait_for_event("notify_sent")
            assert sent["pids"] == [app.pid]
            assert sent["target"] == f"process {name}"
    finally:
        stop_app(app)


def test_a_stale_pid_file_is_logged_and_the_agent_goes_on(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{gone.pid}\n")
    config = write_file_source(
        tmp_path, FIRST_VALUE, **FILES, notify={"pid_file": "app.pid", "debounce": "0s"}
    )
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("files_written")
        _change_value(agent, tmp_path, "value-2", 2)
        missing = agent.wait_for_event("notify_target_missing")
        assert missing["pids"] == [gone.pid]
        assert "stale pid_file" in missing["reason"]
        assert missing["level"] == "warning"
        # It goes on: the next change is applied, and reaches the app once it is back.
        app, log = start_recorder(tmp_path)
        try:
            pid_file.write_text(f"{app.pid}\n")
            _change_value(agent, tmp_path, "value-3", 3)
            wait_for_line(log, "SIGHUP 1")
            assert (tmp_path / "params" / "key").read_text() == "value-3"
            assert agent.proc.poll() is None
        finally:
            stop_app(app)
    assert "value-2" not in agent.log_text() and "value-3" not in agent.log_text()


def test_command_runs_after_each_signal(tmp_path: Path) -> None:
    app, log = start_recorder(tmp_path)
    try:
        (tmp_path / "app.pid").write_text(str(app.pid))
        trail = tmp_path / "trail"
        config = write_file_source(
            tmp_path,
            FIRST_VALUE,
            **FILES,
            notify={
                "pid_file": "app.pid",
                "debounce": "0s",
                "command": ["sh", "-c", f"cat params/key >> {trail}; echo >> {trail}"],
            },
        )
        with AgentProcess("run", "-c", str(config), cwd=tmp_path) as agent:
            agent.wait_for_event("files_written")
            _change_value(agent, tmp_path, "value-2", 2)
            wait_until(lambda: "value-2" in read_lines(trail), 15, what="command ran")
            done = agent.wait_for_event("notify_command_done")
            assert done["exit_code"] == 0
            sent = [e for e in agent.events() if e.get("event") == "notify_sent"]
            assert sent and sent[0]["timestamp"] <= done["timestamp"]
            wait_for_line(log, "SIGHUP 1")
    finally:
        stop_app(app)
