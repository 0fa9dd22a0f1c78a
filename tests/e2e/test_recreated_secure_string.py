"""Row 14 end to end: a SecureString deleted and re-created at version 1 with a new value is
served over HTTP, written to its file and signalled to the app, all within a cycle or two."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.builders import ssm_source, write_config
from tests.support.child_apps import HUP_READER, read_lines, wait_for_line, write_app
from tests.support.moto import free_port
from tests.support.processes import AgentProcess

NAME = "/app/db/password"


def test_recreated_secure_string_is_served_written_and_signalled(
    tmp_path: Path, ssm: Any, moto_url: str
) -> None:
    ssm.put_parameter(Name=NAME, Value="first-value", Type="SecureString")
    port = free_port()
    config = write_config(
        tmp_path / "config.toml",
        {
            "source": ssm_source(moto_url),
            "parameters": [{"path": "/app"}],
            "refresh": {"interval": "300ms", "jitter": 0.0, "max_backoff": "1s"},
            "http": {"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")},
            "files": {"dir": str(tmp_path / "params")},
            "notify": {"pid_file": str(tmp_path / "app.pid"), "debounce": "100ms"},
        },
    )
    log = tmp_path / "app.log"
    file = tmp_path / "params" / "db" / "password"
    url = f"http://127.0.0.1:{port}/v1/parameters{NAME}"
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("ready")
        reader = write_app(tmp_path, HUP_READER, "reader.py")
        app = subprocess.Popen(
            [sys.executable, str(reader), str(log), str(file), url, str(tmp_path / "token")]
        )
        try:
            (tmp_path / "app.pid").write_text(f"{app.pid}\n")
            wait_for_line(log, "first-value first-value")
            ssm.delete_parameter(Name=NAME)
            ssm.put_parameter(Name=NAME, Value="second-value", Type="SecureString")
            assert ssm.get_parameter(Name=NAME)["Parameter"]["Version"] == 1
            wait_for_line(log, "second-value second-value", timeout=15)
            assert file.read_text() == "second-value"
        finally:
            app.terminate()
            app.wait(10)
    assert read_lines(log) == ["first-value first-value", "second-value second-value"]
    sent = [e for e in agent.events() if e.get("event") == "notify_sent"]
    assert len(sent) == 1 and sent[0]["outcome"] == "sent"
    assert "first-value" not in agent.log_text() and "second-value" not in agent.log_text()
