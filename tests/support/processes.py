"""Run the real `ssm-sidecar` process for end-to-end tests and read its JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def json_objects(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The lines that are JSON objects, parsed (log lines of the agent; others skipped)."""
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


class AgentProcess:
    """`ssm-sidecar ARGS` as a child process; stderr (JSON logs) collected line by line."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            command or agent_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd or REPO,
        )
        self.lines: list[str] = []
        self.stdout = b""
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _read_stdout(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        for chunk in iter(lambda: stream.read(1), b""):
            with self._lock:
                self.stdout += chunk

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def events(self) -> list[dict[str, Any]]:
        """Every stderr line that is a JSON object."""
        with self._lock:
            lines = list(self.lines)
        return json_objects(lines)

    def wait_for_event(self, event: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for e in self.events():
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                    return e
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited ({self.proc.returncode}) before {event!r}:\n{self.log_text()}"
                )
            return None

        found = wait_until(find, timeout, what=f"log event {event} {fields}")
        assert found is not None
        return found

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(10)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
