"""Fleet mode with three real agent processes, each in exec mode with a child that reads its
file and its agent's HTTP API when signalled: a change reaches all three within
watch_interval + 1 s; SIGKILL of the watcher -> another takes over within the lease and changes
keep flowing."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.builders import ssm_source, write_config
from tests.support.child_apps import HUP_READER, http_get, wait_for_line, write_app
from tests.support.fleet import KEY_PARAMETER, proxies, seed, ssm_calls
from tests.support.moto import free_port
from tests.support.processes import AgentProcess, agent_command
from tests.support.waiting import wait_until

WATCH = 1.0
LEASE = 5.0  # max(5 s, 3 x watch_interval)


def start_agent(tmp: Path, proxy_url: str, redis_url: str) -> tuple[AgentProcess, int, Path]:
    tmp.mkdir()
    port = free_port()
    config = write_config(
        tmp / "config.toml",
        {
            "source": ssm_source(proxy_url),
            "parameters": [{"path": "/app"}],
            "refresh": {"interval": "30s", "jitter": 0.0, "max_backoff": "1s"},
            "http": {"listen": f"127.0.0.1:{port}", "token_file": "token"},
            "files": {"dir": "params"},
            "notify": {"debounce": "100ms"},
            "fleet": {
                "url": redis_url,
                "name": "e2e",
                "key_parameter": KEY_PARAMETER,
                "watch_interval": "1s",
                "safety_interval": "10m",
            },
        },
    )
    log = tmp / "child.log"
    child = write_app(tmp, HUP_READER, "child.py")
    url = f"http://127.0.0.1:{port}/v1/parameters/app/plain"
    argv = [str(log), str(tmp / "params" / "plain"), url, str(tmp / "token")]
    cmd = agent_command("run", "-c", str(config), "--", sys.executable, str(child), *argv)
    return AgentProcess(command=cmd), port, log


def role(port: int) -> str | None:
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        return None
    return json.loads(body)["fleet"]["role"] if status == 200 else None


@contextlib.contextmanager
def running(agents: list[AgentProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for a in agents:
            a.stop()


def test_three_processes_change_reaches_all_and_watcher_kill_hands_over(
    ssm: Any, moto_url: str, redis_url: str, tmp_path: Path
) -> None:
    seed(ssm)
    with proxies(moto_url, 3) as started:
        parts = [start_agent(tmp_path / f"a{i}", p.url, redis_url) for i, p in enumerate(started)]
        agents = [a for a, _, _ in parts]
        ports = [port for _, port, _ in parts]
        logs = [log for _, _, log in parts]
        with running(agents):
            for log in logs:
                wait_for_line(log, "hello hello", timeout=30)
            wait_until(
                lambda: sorted(str(role(p)) for p in ports) == ["follower", "follower", "watcher"],
                20,
                what="one watcher, two followers",
            )

            # A change reaches HTTP, the file and the signalled child of all three.
            ssm.put_parameter(Name="/app/plain", Value="one", Type="String", Overwrite=True)
            deadline = time.monotonic() + WATCH + 1.0
            for log in logs:
                wait_for_line(log, "one one", timeout=max(0.01, deadline - time.monotonic()))

            # Followers make no SSM call in steady state.
            watcher = next(i for i, p in enumerate(ports) if role(p) == "watcher")
            for p in started:
                p.reset_calls()
            started[watcher].wait_for_count(3, "GetParametersByPath", timeout=10)
            assert [ssm_calls(p) for i, p in enumerate(started) if i != watcher] == [0, 0]

            # SIGKILL of the watcher: another takes over within the lease (plus one attempt
            # period of lease/3) and changes keep flowing.
            agents[watcher].signal(signal.SIGKILL)
            killed = time.monotonic()
            rest = [i for i in range(3) if i != watcher]
            wait_until(
                lambda: any(role(ports[i]) == "watcher" for i in rest),
                LEASE + LEASE / 3 + 1.0,
                what="a new watcher",
            )
            took = time.monotonic() - killed
            assert took <= LEASE + LEASE / 3 + 1.0
            ssm.put_parameter(Name="/app/plain", Value="two", Type="String", Overwrite=True)
            deadline = time.monotonic() + WATCH + 1.0
            for i in rest:
                wait_for_line(logs[i], "two two", timeout=max(0.01, deadline - time.monotonic()))
            for i in rest:
                text = agents[i].log_text()
                assert "s3cret-one" not in text
