"""Serving: requests/s and p50/p99 of the agent's two read routes against a bare aiohttp ceiling.

One run starts three servers, each its own process on uvloop, pinned to CPU 0 (the load
generator gets CPU 1): the bare aiohttp handler (bench/bare_server.py), the agent as it is now,
and, when git has it, the agent as it was before the hot-path work (BEFORE_REVISION, exported with
`git archive` into a temp dir; the working tree is not touched). Every server is measured
`rounds` times in rotation; the round with the median requests/s is reported.
"""

from __future__ import annotations

import statistics
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from urllib.parse import quote

from bench import loadgen
from bench.common import (
    CHILDREN,
    PYTHON,
    REPO,
    TOKEN_HEADER,
    agent_argv,
    agent_env,
    http_get,
    ms,
    progress,
    table,
    wait_for_ready,
    write_agent_config,
)
from tests.support.moto import free_port

#: The last commit before the serving work of issue #7 (the HTTP API as first delivered).
BEFORE_REVISION = "4ea2f0c"
NAME = "/bench/serving/db/url"
VALUE = "postgres://app@db.internal:5432/app"
NATIVE_PATH = "/v1/parameters" + NAME
COMPAT_PATH = "/systemsmanager/parameters/get?name=" + quote(NAME, safe="")
SERVER_CPU, LOAD_CPU = "0", "1"


@dataclass(frozen=True)
class Target:
    label: str
    base_url: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Measured:
    target: Target
    result: loadgen.LoadResult


def _export_revision(revision: str, into: Path) -> Path | None:
    """`agent/` as of `revision` in `into`, or None when git or the revision is unavailable."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "agent"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


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


def _start_agent(work: Path, code_dir: Path | None) -> tuple[str, str]:
    """(base URL, token) of an agent started from `code_dir` (None: this working tree)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _agent_config(work, port)
    env = agent_env()
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir)
    proc = CHILDREN.start(agent_argv(config), env=env, cwd=code_dir or REPO, cpu=SERVER_CPU)
    base = f"http://127.0.0.1:{port}"
    wait_for_ready(base, proc, timeout=30)
    return base, (work / "token").read_text().strip()


def _start_bare() -> str:
    port = free_port()
    proc = CHILDREN.start([PYTHON, "-m", "bench.bare_server", str(port)], cpu=SERVER_CPU)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while http_get(base + NATIVE_PATH) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the bare aiohttp server did not start")
        time.sleep(0.02)
    return base


def _targets(work: Path, before: str | None) -> list[Target]:
    bare = _start_bare()
    base, token = _start_agent(work / "agent", None)
    auth = {TOKEN_HEADER: token}
    targets = [
        Target("bare aiohttp, constant (ceiling)", bare, NATIVE_PATH, {}),
        Target("agent `GET /v1/parameters/{name}`", base, NATIVE_PATH, auth),
        Target("agent `GET /systemsmanager/parameters/get?name=`", base, COMPAT_PATH, auth),
    ]
    if before is not None:
        code = _export_revision(before, work / "before-code")
        if code is None:
            progress(f"serving: git revision {before} unavailable; no 'before' rows")
        else:
            base, token = _start_agent(work / "agent-before", code)
            auth = {TOKEN_HEADER: token}
            targets += [
                Target(f"agent @ {before} (before) `/v1/parameters/{{name}}`", base, NATIVE_PATH, auth),
                Target(f"agent @ {before} (before) compat route", base, COMPAT_PATH, auth),
            ]
    for t in targets:
        status = http_get(t.base_url + t.path, t.headers)
        if status != 200:
            raise RuntimeError(f"{t.label}: GET {t.path} answered {status}, not 200")
    return targets


def measure(
    connections: int = 32, seconds: float = 5.0, rounds: int = 3, before: str | None = BEFORE_REVISION
) -> str:
    """Runs the benchmark; returns the markdown section."""
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        targets = _targets(Path(tmp), before)
        runs: dict[str, list[loadgen.LoadResult]] = {t.label: [] for t in targets}
        for t in targets:  # warm-up: first requests pay lazy imports and caches
            loadgen.run(t.base_url + t.path, t.headers, connections, 1.0, LOAD_CPU)
        for r in range(rounds):
            for t in targets:
                result = loadgen.run(t.base_url + t.path, t.headers, connections, seconds, LOAD_CPU)
                if result.failed:
                    raise RuntimeError(f"{t.label}: {result.failed} failed requests")
                runs[t.label].append(result)
                progress(
                    f"serving round {r + 1}/{rounds}: {t.label}: {result.rps:,.0f} req/s, "
                    f"p50 {ms(result.p50)}, p99 {ms(result.p99)}"
                )
        return _report(targets, runs, connections, seconds, rounds)


def _median_run(results: list[loadgen.LoadResult]) -> loadgen.LoadResult:
    middle = statistics.median_low(r.rps for r in results)
    return next(r for r in results if r.rps == middle)


def _report(
    targets: list[Target],
    runs: dict[str, list[loadgen.LoadResult]],
    connections: int,
    seconds: float,
    rounds: int,
) -> str:
    ceiling = _median_run(runs[targets[0].label]).rps
    rows = []
    for t in targets:
        m = _median_run(runs[t.label])
        spread = ", ".join(f"{r.rps:,.0f}" for r in runs[t.label])
        rows.append(
            [t.label, f"{m.rps:,.0f}", spread, ms(m.p50), ms(m.p99), f"{m.rps / ceiling:.2f}"]
        )
    tool = _median_run(runs[targets[0].label]).tool
    return (
        f"Load generator: {tool}, 1 thread, {connections} keep-alive connections, "
        f"{seconds:.0f} s per run, {rounds} rounds in rotation (the median round is shown; all "
        f"rounds' requests/s in the third column). Servers pinned to CPU {SERVER_CPU}, the load "
        f"generator to CPU {LOAD_CPU}.\n\n"
        + table(
            ["server and route", "requests/s", "all rounds", "p50", "p99", "ratio to bare"], rows
        )
    )
