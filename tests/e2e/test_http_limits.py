"""Rows 2-3 of issue 12, against the real agent process: connection exhaustion.

The agent runs under a 1,024 descriptor limit (soft and hard, so raising the soft limit at start
cannot help it). An attacker on loopback holds 300 connections that sent the headers of `POST /`
and one byte of the body and 1,000 connections that sent nothing (row 2: before the fix the slow
bodies held every concurrency slot), or 1,300 that sent nothing (row 3: before the fix the
descriptors ran out), reopening whatever the agent closes once a second. Meanwhile a token
client's reads, each on a new connection and on one kept-alive connection, must all succeed.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
from pathlib import Path

import pytest

from tests.support.conn_attack import ConnectionAttack
from tests.support.moto import free_port
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until

NOFILE = 1024
ATTACK_SECONDS = 6.0


def _config(tmp_path: Path, port: int) -> Path:
    (tmp_path / "values.toml").write_text('"/app/a" = "value-a"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        '[source]\ntype = "file"\npath = "values.toml"\n'
        '[[parameters]]\npath = "/app"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\ntoken_file = "token"\n'
        # The SDK protocol on: POST / then reads bodies, which is what slow bodies attack.
        f'aws_protocols = ["ssm"]\nallowed_uids = [{os.getuid()}]\n'
        '[log]\nformat = "json"\n'
    )
    return config


def _read(conn: http.client.HTTPConnection, token: str) -> tuple[int, bytes]:
    conn.request("GET", "/v1/parameters/app/a", headers={"X-Aws-Parameters-Secrets-Token": token})
    reply = conn.getresponse()
    return reply.status, reply.read()


@pytest.mark.parametrize(
    ("slow_body", "idle"),
    [(300, 1000), (0, 1300)],
    ids=["300-slow-bodies-1000-idle", "1300-idle"],
)
def test_token_reads_all_succeed_during_a_connection_flood(
    tmp_path: Path, slow_body: int, idle: int
) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    command = [
        "prlimit",
        f"--nofile={NOFILE}:{NOFILE}",
        sys.executable,
        "-m",
        "agent",
        "run",
        "-c",
        str(config),
    ]
    with AgentProcess(command=command) as agent:
        agent.wait_for_event("ready")
        token = (tmp_path / "token").read_text().strip()
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert _read(kept, token) == (200, b"value-a")

        failures: list[str] = []
        reads = 0
        with ConnectionAttack("127.0.0.1", port, idle=idle, slow_body=slow_body) as attack:
            wait_until(lambda: attack.counts.opened >= 1300, 10, what="the attack under way")
            deadline = time.monotonic() + ATTACK_SECONDS
            while time.monotonic() < deadline:
                fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                for which, conn in (("new", fresh), ("kept-alive", kept)):
                    reads += 1
                    try:
                        got = _read(conn, token)
                    except OSError as exc:
                        failures.append(f"{which}: {type(exc).__name__}: {exc}")
                        continue
                    if got != (200, b"value-a"):
                        failures.append(f"{which}: HTTP {got[0]}: {got[1][:200]!r}")
                fresh.close()
                time.sleep(0.02)
            counts = attack.counts
        kept.close()
        assert agent.proc.poll() is None, agent.log_text()[-2000:]
        assert failures == [], (
            f"{len(failures)} of {reads} reads failed, first: {failures[:3]}; attack: {counts}"
        )
        assert reads > 50


def test_the_soft_descriptor_limit_is_raised_and_logged(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port())
    command = ["prlimit", "--nofile=300:4096", sys.executable, "-m", "agent", "run"]
    with AgentProcess(command=[*command, "-c", str(config)]) as agent:
        event = agent.wait_for_event("open_file_limit")
        assert (event["soft_before"], event["soft"], event["hard"]) == (300, 4096, 4096)
        listening = agent.wait_for_event("http_listening")
        assert listening["max_connections"] == 512
