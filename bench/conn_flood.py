"""Connection flood: a token client's reads while an attacker holds connections open.

The agent runs as its own process under a 1,024 descriptor limit (`prlimit --nofile=1024:1024`,
soft and hard), pinned to CPU 0; the attacker (tests/support/conn_attack.py, a thread) and the
token client run in this process on CPU 1. The attacker holds slow-body connections (the
headers of `POST /` and one byte of the body, then nothing) and idle ones (nothing at all),
reopening whatever the agent closes once a second. The client reads one value over and over,
alternately on a new connection and on one kept-alive connection, 20 ms apart; every read that
does not answer 200 with the value within 5 s is a failure. Reference in the same run: no attack,
and the agent as it was before the fix (BEFORE_REVISION, exported with `git archive`).
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import report
from bench.common import (
    CHILDREN,
    PYTHON,
    REPO,
    agent_env,
    export_revision,
    ms,
    percentile,
    progress,
    table,
)
from tests.support.conn_attack import ConnectionAttack
from tests.support.moto import free_port

BEFORE_REVISION = "44a1d9b"
NOFILE = 1024
SCENARIOS = {
    "no attack": (0, 0),
    "300 slow bodies + 1,000 idle": (300, 1000),
    "1,300 idle": (0, 1300),
}


@dataclass
class Reads:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"new": [], "kept": []})
    failures: dict[str, int] = field(default_factory=lambda: {"new": 0, "kept": 0})
    first_failure: str = ""


def _start_agent(code: Path, work: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    (work / "values.toml").write_text('"/app/a" = "value-a"\n')
    config = work / "config.toml"
    config.write_text(
        '[source]\ntype = "file"\npath = "values.toml"\n[[parameters]]\npath = "/app"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\ntoken_file = "token"\n'
    )
    limit = f"--nofile={NOFILE}:{NOFILE}"
    argv = ["prlimit", limit, PYTHON, "-m", "agent", "run", "-c", str(config)]
    env = agent_env(PYTHONPATH=str(code))
    proc = CHILDREN.start(argv, env=env, cwd=code, cpu="0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port, (work / "token").read_text().strip()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("agent not ready within 30 s")


def _read(conn: http.client.HTTPConnection, token: str) -> None:
    conn.request("GET", "/v1/parameters/app/a", headers={"X-Aws-Parameters-Secrets-Token": token})
    reply = conn.getresponse()
    body = reply.read()
    if (reply.status, body) != (200, b"value-a"):
        raise ValueError(f"HTTP {reply.status}")


def _client(port: int, token: str, seconds: float) -> Reads:
    reads = Reads()
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for which, conn in (("new", fresh), ("kept", kept)):
            started = time.perf_counter()
            try:
                _read(conn, token)
            except (OSError, ValueError) as exc:
                reads.failures[which] += 1
                reads.first_failure = reads.first_failure or f"{type(exc).__name__}: {exc}"
                if which == "kept":
                    kept.close()  # the next read reconnects, as a pool would
                continue
            reads.latencies[which].append(time.perf_counter() - started)
        fresh.close()
        time.sleep(0.02)
    kept.close()
    return reads


def _row(label: str, scenario: str, reads: Reads, opened: int, closed: int) -> list[str]:
    both = reads.latencies["new"] + reads.latencies["kept"]
    failed = reads.failures["new"] + reads.failures["kept"]
    total = len(both) + failed
    return [
        label,
        scenario,
        f"{total:,}",
        f"**{failed:,}**" + (f" ({reads.first_failure})" if failed else ""),
        ms(percentile(both, 50)) if both else "-",
        f"**{ms(percentile(both, 99))}**" if both else "-",
        ms(percentile(reads.latencies["new"], 99)) if reads.latencies["new"] else "-",
        ms(percentile(reads.latencies["kept"], 99)) if reads.latencies["kept"] else "-",
        ms(max(both)) if both else "-",
        f"{opened:,} / {closed:,}" if opened else "-",
    ]


def measure(seconds: float, before: str) -> str:
    os.sched_setaffinity(0, {1} if (os.cpu_count() or 1) > 1 else {0})
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        versions = [("now", REPO)]
        old = export_revision(before, Path(tmp) / "before") if before else None
        if old is not None:
            versions.append((f"before ({before})", old))
        for label, code in versions:
            for scenario, (slow, idle) in SCENARIOS.items():
                work = Path(tempfile.mkdtemp(dir=tmp))
                progress(f"{label}: {scenario}")
                proc, port, token = _start_agent(code, work)
                try:
                    if slow or idle:
                        attack = ConnectionAttack("127.0.0.1", port, idle=idle, slow_body=slow)
                        with attack:
                            time.sleep(1.0)  # the attack under way
                            reads = _client(port, token, seconds)
                            counts = attack.counts
                    else:
                        reads = _client(port, token, seconds)
                        counts = None
                finally:
                    CHILDREN.stop(proc)
                opened = counts.opened if counts else 0
                closed = counts.closed_by_server if counts else 0
                rows.append(_row(label, scenario, reads, opened, closed))
    headers = [
        "agent",
        "attack",
        "reads",
        "failed",
        "p50",
        "p99",
        "p99 new conn.",
        "p99 kept-alive",
        "max",
        "attacker connections opened / closed by the agent",
    ]
    return (
        f"Agent under `prlimit --nofile={NOFILE}:{NOFILE}` on CPU 0; attacker thread and token "
        f"client on CPU 1; {seconds:g} s of reads per row after 1 s of attack. A read is a "
        "`GET /v1/parameters/{name}` with the token; half on a new connection each, half on one "
        "kept-alive connection (reopened after a failure). Latency is the client's, connect "
        "included for new connections.\n\n"
        + table(headers, rows)
        + "\n\nThe defaults did it (`http.max_connections = 512`, ceiling 768 under this "
        "limit, `body_timeout = 10s`): idle and half-sent connections that never completed a "
        "request are closed first, oldest first and at once if nothing waits in their socket, "
        "so a client whose request is waiting keeps its connection; bodies are read before "
        "the concurrency slot, so slow bodies hold none. Before the fix the slow bodies held "
        "every slot (429) and the idle ones every descriptor (connection resets)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="reads per row")
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision; '' for none")
    args = parser.parse_args()
    return report.run(
        "conn-flood",
        "Connection flood: a token client's reads during 1,300 attacker connections",
        "bench.conn_flood",
        lambda: measure(args.seconds, args.before),
    )


if __name__ == "__main__":
    raise SystemExit(main())
