"""Serving: requests/s and p50/p99 of the agent's two read routes against a bare aiohttp ceiling.

One run starts three servers, each its own process on uvloop, pinned to CPU 0 (the load
generator gets CPU 1): the bare aiohttp handler (bench/bare_server.py), the agent as it is now,
and, when git has it, the agent as it was before the hot-path work (BEFORE_REVISION, exported with
`git archive` into a temp dir; the working tree is not touched). Every server is measured
`rounds` times in rotation; see `_report` for what is shown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench import loadgen, read_path, report
from bench.common import (
    BASELINE,
    CHILDREN,
    PYTHON,
    REPO,
    TOKEN_HEADER,
    agent_argv,
    agent_env,
    export_revision,
    http_get,
    ms,
    progress,
    table,
    wait_for_ready,
    write_agent_config,
)
from bench.report import record
from tests.support.moto import free_port
from tests.support.processes import cpu_seconds

#: The "before" agent: main when issue #15 was filed (issue #7's own before was 4ea2f0c).
BEFORE_REVISION = BASELINE
NAME = "/bench/serving/db/url"
VALUE = "postgres://app@db.internal:5432/app"
NATIVE_PATH = "/v1/parameters" + NAME
COMPAT_PATH = "/systemsmanager/parameters/get?name=" + quote(NAME, safe="")
SERVER_CPU, LOAD_CPU = "0", "1"


@dataclass(frozen=True)
class Target:
    key: str  # in the results file: "bare", "after/v1", "before/extension", ...
    label: str
    pid: int
    base_url: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Run:
    load: loadgen.LoadResult
    cpu_seconds: float  # the server's user + system CPU time during the run

    @property
    def rps(self) -> float:
        return self.load.rps

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.load.requests)


def run_once(t: Target, connections: int, seconds: float) -> Run:
    before = cpu_seconds(t.pid)
    load = loadgen.run(t.base_url + t.path, t.headers, connections, seconds, LOAD_CPU)
    return Run(load, cpu_seconds(t.pid) - before)


def _agent_config(work: Path, port: int) -> Path:
    (work / "values.toml").write_text(
        f'"{NAME}" = "{VALUE}"\n"/bench/serving/api/key" = "k-0123456789"\n'
    )
    return write_agent_config(
        work / "config.toml",
        {
            "source": {"type": "file", "path": str(work / "values.toml")},
            "parameters": [{"path": "/bench/serving"}],
            "http": {"listen": f"127.0.0.1:{port}", "token_file": str(work / "token")},
            "log": {"level": "info", "format": "json"},
        },
    )


def _start_agent(work: Path, code_dir: Path | None) -> tuple[int, str, str]:
    """(pid, base URL, token) of an agent started from `code_dir` (None: this working tree)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _agent_config(work, port)
    env = agent_env()
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir)
    proc = CHILDREN.start(agent_argv(config), env=env, cwd=code_dir or REPO, cpu=SERVER_CPU)
    base = f"http://127.0.0.1:{port}"
    wait_for_ready(base, proc, timeout=30)
    return proc.pid, base, (work / "token").read_text().strip()


def _start_bare() -> tuple[int, str]:
    port = free_port()
    proc = CHILDREN.start([PYTHON, "-m", "bench.bare_server", str(port)], cpu=SERVER_CPU)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while http_get(base + NATIVE_PATH) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the bare aiohttp server did not start")
        time.sleep(0.02)
    return proc.pid, base


def _agent_targets(which: str, label: str, pid: int, base: str, token: str) -> list[Target]:
    auth = {TOKEN_HEADER: token}
    native, compat = "`GET /v1/parameters/{name}`", "`GET /systemsmanager/parameters/get?name=`"
    return [
        Target(f"{which}/v1", f"{label} {native}", pid, base, NATIVE_PATH, auth),
        Target(f"{which}/extension", f"{label} {compat}", pid, base, COMPAT_PATH, auth),
    ]


def _targets(work: Path, before: str | None) -> list[Target]:
    pid, bare = _start_bare()
    targets = [Target("bare", "bare aiohttp, constant (ceiling)", pid, bare, NATIVE_PATH, {})]
    targets += _agent_targets("after", "agent", *_start_agent(work / "agent", None))
    if before is not None:
        code = export_revision(before, work / "before-code")
        if code is None:
            progress(f"serving: git revision {before} unavailable; no 'before' rows")
        else:
            agent = _start_agent(work / "agent-before", code)
            targets += _agent_targets("before", f"agent @ {before} (before)", *agent)
    for t in targets:
        status = http_get(t.base_url + t.path, t.headers)
        if status != 200:
            raise RuntimeError(f"{t.label}: GET {t.path} answered {status}, not 200")
    return targets


def measure(
    connections: int | Sequence[int] = 32,
    seconds: float = 4.0,
    rounds: int = 5,
    before: str | None = BEFORE_REVISION,
) -> str:
    """Runs the benchmark (once per connection count, same servers); the markdown section."""
    counts = [connections] if isinstance(connections, int) else list(connections)
    sections = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        targets = _targets(Path(tmp), before)
        for n in counts:
            runs = _rotate(targets, n, seconds, rounds)
            sections.append(_report(targets, runs, n, seconds, rounds))
        sections.append(_read_paths(next(t for t in targets if t.key == "after/v1")))
    return "\n\n".join(sections)


def _read_paths(agent: Target) -> str:
    """The app's cost of one read: the file, or one HTTP request (client + agent)."""
    cpu = int(LOAD_CPU)
    best_file = min(
        (read_path.file_reads(VALUE.encode(), cpu) for _ in range(3)), key=lambda c: c.app_cpu_s
    )
    best_http = min(
        (
            read_path.http_reads(agent.base_url + agent.path, agent.headers, agent.pid, cpu)
            for _ in range(3)
        ),
        key=lambda c: c.app_cpu_s + c.agent_cpu_s,
    )
    rows = []
    for name, key, cost in (
        ("a read of `files.dir/url` (`open().read()`)", "file", best_file),
        ("`GET /v1/parameters/{name}` on a kept-alive `http.client` connection", "http", best_http),
    ):
        app_us, agent_us = cost.per_read_us(cost.app_cpu_s), cost.per_read_us(cost.agent_cpu_s)
        wall_us = cost.per_read_us(cost.wall_s)
        record(
            f"read/{key}",
            {
                "app_cpu_us": round(app_us, 2),
                "agent_cpu_us": round(agent_us, 2),
                "wall_us": round(wall_us, 2),
            },
        )
        rows.append(
            [
                name,
                f"{cost.reads:,}",
                f"{wall_us:.1f} us",
                f"{app_us:.1f} us",
                f"{agent_us:.1f} us" if key == "http" else "0 (not involved)",
            ]
        )
    return (
        "**The file read path.** What one read costs a Python app (this process, pinned to CPU "
        f"{LOAD_CPU}, best of 3 runs): reading the value's file from tmpfs (the files output's "
        "medium in a pod) against one HTTP request to the agent. The file needs no agent work "
        "per read and no token; HTTP gives versions, long-polls and JSON errors.\n\n"
        + table(["read", "reads", "wall per read", "app CPU per read", "agent CPU per read"], rows)
    )


def _rotate(
    targets: list[Target], connections: int, seconds: float, rounds: int
) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {t.label: [] for t in targets}
    for t in targets:  # warm-up: first requests pay lazy imports and caches
        run_once(t, connections, 1.0)
    for r in range(rounds):
        for t in targets:
            result = run_once(t, connections, seconds)
            if result.load.failed:
                raise RuntimeError(f"{t.label}: {result.load.failed} failed requests")
            runs[t.label].append(result)
            progress(
                f"serving {connections} conns, round {r + 1}/{rounds}: {t.label}: "
                f"{result.rps:,.0f} req/s, p50 {ms(result.load.p50)}, "
                f"p99 {ms(result.load.p99)}, {result.cpu_per_request * 1e6:.0f} us CPU/request"
            )
    return runs


def _best_run(results: list[Run]) -> Run:
    """The round with the most requests/s: the one least disturbed by other work."""
    return max(results, key=lambda r: r.rps)


def _report(
    targets: list[Target],
    runs: dict[str, list[Run]],
    connections: int,
    seconds: float,
    rounds: int,
) -> str:
    ceiling = _best_run(runs[targets[0].label])
    ceiling_cpu = statistics.median(r.cpu_per_request for r in runs[targets[0].label])
    rows = []
    for t in targets:
        best = _best_run(runs[t.label])
        cpu = statistics.median(r.cpu_per_request for r in runs[t.label])
        record(
            f"{connections}/{t.key}",
            {
                "label": t.label,
                "rps_best": round(best.rps),
                "p50_ms": round(best.load.p50 * 1e3, 2),
                "p99_ms": round(best.load.p99 * 1e3, 2),
                "cpu_per_request_us": round(cpu * 1e6, 2),
                "ratio_cpu": round(ceiling_cpu / cpu, 3),
                "ratio_rps": round(best.rps / ceiling.rps, 3),
            },
        )
        rows.append(
            [
                t.label,
                f"{best.rps:,.0f}",
                ", ".join(f"{r.rps:,.0f}" for r in runs[t.label]),
                ms(best.load.p50),
                ms(best.load.p99),
                f"{cpu * 1e6:.0f} us",
                f"{best.rps / ceiling.rps:.2f}",
                f"{ceiling_cpu / cpu:.2f}",
            ]
        )
    return (
        f"**{connections} connections.** "
        f"Load generator: {ceiling.load.tool}, 1 thread, {connections} keep-alive connections, "
        f"{seconds:g} s per run, {rounds} rounds in rotation. Servers pinned to CPU "
        f"{SERVER_CPU}, the load generator to CPU {LOAD_CPU}. Requests/s, p50 and p99 are those "
        "of each server's best round (the one least disturbed by other work on the machine; "
        'every round\'s requests/s is in the third column). "CPU/request" is the server '
        "process's user + system time during a round divided by the requests it answered "
        "(median of the rounds): a server pinned to one core and kept busy can answer at most "
        "1/(CPU per request) requests a second, and unlike requests/s this barely moves when "
        "other work shares the machine, so the last column (bare's CPU/request over the "
        "server's) is the steadier ratio. The agents serve two parameters from a values file "
        '(`source.type = "file"`, log level info): the source plays no part in answering a read.'
        "\n\n"
        + table(
            [
                "server and route",
                "requests/s (best round)",
                "all rounds",
                "p50",
                "p99",
                "CPU/request",
                "ratio to bare (req/s)",
                "ratio to bare (CPU/request)",
            ],
            rows,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per server, in rotation")
    parser.add_argument(
        "--connections", default="16,256", help="keep-alive connections, comma-separated"
    )
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision; '' for none")
    args = parser.parse_args()
    return report.run(
        "serving",
        "Serving: requests/s and latency against a bare aiohttp handler",
        "bench.serving",
        lambda: measure(
            [int(n) for n in args.connections.split(",")],
            args.seconds,
            args.rounds,
            args.before or None,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
