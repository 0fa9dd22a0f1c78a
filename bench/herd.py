"""Fleet herd: 50 agent processes started together against an account-quota emulator.

One FaultProxy in front of moto answers ThrottlingException above 40 requests/s across all
clients (a token bucket that starts full with 40 tokens). Each agent reads the same 20
parameters under one path (interval 5 s, jitter 0.1, max_backoff 30 s, botocore standard retries
with 3 attempts a call), with its HTTP API on its own loopback port. Beside each agent, one "app"
(a thread here) waits for `/readyz` like a startupProbe, then reads one SecureString through
`GET /v1/parameters/{name}` every 200 ms: every read after readiness must succeed. Then one
PutParameter: how long until all 50 serve the new value.

Two scenarios, one fleet each: "as started" (the processes simply start together; on 2 cores
their boots queue for CPU, which spreads the first loads) and "released at once" (a gate holds
every agent's first SSM request until all 50 wait, then lets them through together, as 50 pods
on 50 nodes would arrive). See bench/herd_gate.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import math
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    CHILDREN,
    TOKEN_HEADER,
    agent_argv,
    agent_env,
    mib,
    mixed_parameters,
    percentile,
    proc_status_kb,
    progress,
    seed,
    ssm_source,
    table,
    write_agent_config,
)
from bench.herd_gate import Gate
from bench.report import run
from tests.support.fault_proxy import Call, FaultProxy
from tests.support.moto import boto3_client, free_port, start_moto_server
from tests.support.processes import json_objects

AGENTS = 50
PARAMS = 20
PATH = "/bench/herd/app"
QUOTA = 40.0  # requests/s across all agents; burst = the same number of tokens
INTERVAL, JITTER, MAX_BACKOFF = 5.0, 0.1, 30.0
SOURCE_TIMEOUT = "60s"  # so that a request held at the gate is not a timeout
READ_EVERY = 0.2
READY_DEADLINE = 300.0
STEADY_WINDOW = 15.0
CHANGE_DEADLINE = 150.0
AS_STARTED, RELEASED = "as started", "released at once"


# ------------------------------------------------------------------------------ the apps


@dataclass
class Shared:
    """What the apps compare their reads with; `new_value` is set just before the change."""

    stop: threading.Event
    old_value: str
    new_value: str | None = None


@dataclass
class AppStats:
    http_up_at: float | None = None  # first answer of /readyz (any status)
    ready_at: float | None = None  # first /readyz 200
    reads: int = 0
    failures: int = 0
    failure_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    saw_new_at: float | None = None


class App(threading.Thread):
    """One agent's application: startupProbe on /readyz, then a read every READ_EVERY."""

    def __init__(self, port: int, token_file: Path, name: str, shared: Shared) -> None:
        super().__init__(daemon=True, name=f"app-{port}")
        self.port = port
        self.token_file = token_file
        self.path = "/v1/parameters" + name
        self.shared = shared
        self.stats = AppStats()
        self._conn: http.client.HTTPConnection | None = None

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, str]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
        try:
            self._conn.request("GET", path, headers=headers)
            reply = self._conn.getresponse()
            return reply.status, reply.read().decode("utf-8", errors="replace")
        except Exception:
            self._conn.close()
            self._conn = None
            raise

    def _every(self, seconds: float) -> Iterator[None]:
        """Yields at a steady rate until stopped (no drift from the time each step takes)."""
        tick = time.monotonic()
        while not self.shared.stop.is_set():
            yield
            tick += seconds
            self.shared.stop.wait(max(0.0, tick - time.monotonic()))

    def run(self) -> None:
        s = self.stats
        for _ in self._every(READ_EVERY):  # the startupProbe
            try:
                status, _body = self._get("/readyz", {})
            except OSError:
                continue
            s.http_up_at = s.http_up_at or time.monotonic()
            if status == 200:
                s.ready_at = time.monotonic()
                break
        if s.ready_at is None:
            return
        headers = {TOKEN_HEADER: self.token_file.read_text().strip()}
        for _ in self._every(READ_EVERY):
            s.reads += 1
            started = time.monotonic()
            try:
                status, body = self._get(self.path, headers)
            except OSError as exc:
                s.failures += 1
                s.failure_kinds[type(exc).__name__] += 1
                continue
            s.latencies.append(time.monotonic() - started)
            new = self.shared.new_value
            if status != 200:
                s.failures += 1
                s.failure_kinds[f"HTTP {status}"] += 1
            elif new is not None and body == new:
                s.saw_new_at = s.saw_new_at or time.monotonic()
            elif body != self.shared.old_value:
                s.failures += 1
                s.failure_kinds["unexpected value"] += 1


# ------------------------------------------------------------------------------ the fleet


@dataclass(frozen=True)
class Agent:
    proc: Any
    port: int
    work: Path


def _start_fleet(endpoint_url: str, tmp: Path, count: int) -> tuple[list[Agent], float]:
    """Writes every config first, then starts all agents back to back: (agents, t0)."""
    prepared = []
    for i in range(count):
        work = tmp / f"agent-{i:02d}"
        port = free_port()
        config = write_agent_config(
            work / "config.toml",
            {
                "source": ssm_source(endpoint_url, timeout=SOURCE_TIMEOUT),
                "parameters": [{"path": PATH}],
                "refresh": {
                    "interval": f"{INTERVAL:g}s",
                    "jitter": JITTER,
                    "max_backoff": f"{MAX_BACKOFF:g}s",
                },
                "http": {"listen": f"127.0.0.1:{port}", "token_file": str(work / "token")},
                "log": {"level": "info", "format": "json"},
            },
        )
        prepared.append((work, port, config))
    env = agent_env()
    agents = []
    t0 = time.monotonic()
    for work, port, config in prepared:
        with (work / "agent.log").open("wb") as log:
            proc = CHILDREN.start(agent_argv(config), env=env, stderr=log)
        agents.append(Agent(proc, port, work))
    return agents, t0


def _wait(until: Callable[[], bool], agents: Sequence[Agent], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if until():
            return True
        for agent in agents:
            if agent.proc.poll() is not None:
                raise RuntimeError(
                    f"agent on port {agent.port} exited with {agent.proc.returncode}"
                )
        time.sleep(0.05)
    return False


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10.0) as reply:
        text: str = reply.read().decode()
        return text


def _metric_sum(texts: Sequence[str], name: str, must_contain: str = "") -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for text in texts
        for line in text.splitlines()
        if line.startswith(name) and must_contain in line
    )


def _log_events(work: Path) -> list[dict[str, Any]]:
    return json_objects((work / "agent.log").read_text(errors="replace").splitlines())


def _stamp(event: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


# ------------------------------------------------------------------------------ one scenario


@dataclass
class Timeline:
    t0: float  # just before the first Popen
    wall0: float
    spawned: float = 0.0  # seconds to Popen them all
    released: float | None = None  # the gate opened (RELEASED only)
    ready: float = 0.0  # all ready (or the deadline)
    change: float = 0.0  # PutParameter
    end: float = 0.0  # all serve the change (or the deadline)
    all_ready: bool = False
    all_new: bool = False


@dataclass
class Outcome:
    scenario: str
    timeline: Timeline
    calls: list[Call]
    apps: list[App]
    metrics: list[str]
    events: list[list[dict[str, Any]]]
    rss_kb: list[int]
    hwm_kb: list[int]


def run_scenario(
    scenario: str, proxy: FaultProxy, moto_url: str, count: int, watched: str, value: str
) -> Outcome:
    proxy.reset_calls()
    proxy.set_rate_limit(QUOTA)  # a full bucket for each fleet
    shared = Shared(threading.Event(), value)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-herd-")))
        gate = stack.enter_context(Gate(proxy.url)) if scenario == RELEASED else None
        progress(f"herd ({scenario}): starting {count} agents at once")
        wall0 = time.time()
        agents, t0 = _start_fleet(gate.url if gate else proxy.url, tmp, count)
        line = Timeline(t0, wall0, spawned=time.monotonic() - t0)
        stack.callback(CHILDREN.stop_many, [a.proc for a in agents])
        stack.callback(shared.stop.set)
        apps = [App(a.port, a.work / "token", watched, shared) for a in agents]
        for app in apps:
            app.start()
        if gate is not None:
            if not _wait(lambda: gate.held() >= count, agents, t0 + READY_DEADLINE):
                raise TimeoutError(f"only {gate.held()} of {count} agents reached the gate")
            gate.release()
            line.released = time.monotonic()
            progress(
                f"herd ({scenario}): all first requests released at {line.released - t0:.1f} s"
            )

        line.all_ready = _wait(
            lambda: all(a.stats.ready_at for a in apps), agents, t0 + READY_DEADLINE
        )
        line.ready = time.monotonic()
        progress(f"herd ({scenario}): all ready: {line.all_ready}, at {line.ready - t0:.1f} s")
        rss = [proc_status_kb(a.proc.pid, "VmRSS") or 0 for a in agents]
        hwm = [proc_status_kb(a.proc.pid, "VmHWM") or 0 for a in agents]

        shared.stop.wait(STEADY_WINDOW)  # a fixed measuring window; the apps read throughout
        line.change = time.monotonic()
        shared.new_value = value + "-rotated"
        ssm = boto3_client("ssm", moto_url)  # the operator's change: straight to moto
        ssm.put_parameter(Name=watched, Value=shared.new_value, Type="SecureString", Overwrite=True)
        ssm.close()
        line.all_new = _wait(
            lambda: all(a.stats.saw_new_at for a in apps), agents, line.change + CHANGE_DEADLINE
        )
        line.end = time.monotonic()
        progress(
            f"herd ({scenario}): change served by all: {line.all_new}, "
            f"after {line.end - line.change:.1f} s"
        )
        shared.stop.set()
        for app in apps:
            app.join(15.0)
        texts = [_metrics_text(a.port) for a in agents]
        CHILDREN.stop_many([a.proc for a in agents])
        events = [_log_events(a.work) for a in agents]
    return Outcome(scenario, line, proxy.calls(), apps, texts, events, rss, hwm)


# ------------------------------------------------------------------------------ analysis


def _per_second(calls: Sequence[Call], start: float, end: float) -> list[tuple[int, int]]:
    """(requests, throttled) per 1-second window from `start`."""
    counts = [[0, 0] for _ in range(max(1, math.ceil(end - start)))]
    for c in calls:
        i = int(c.at - start)
        if 0 <= i < len(counts):
            counts[i][0] += 1
            counts[i][1] += c.faulted
    return [(a, b) for a, b in counts]


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {percentile(values, 50):.1f} s, p90 {percentile(values, 90):.1f} s, "
        f"max {max(values):.1f} s"
    )


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _deadline(ok: bool, text: str) -> str:
    return text if ok else f"NOT within the deadline ({text})"


def summary(o: Outcome) -> dict[str, str]:
    t, stats = o.timeline, [a.stats for a in o.apps]
    count = len(stats)
    ready = [s.ready_at - t.t0 for s in stats if s.ready_at]
    up = [s.http_up_at - t.t0 for s in stats if s.http_up_at]
    load_from = t.released
    first_load = [
        s.ready_at - (load_from if load_from is not None else s.http_up_at)
        for s in stats
        if s.ready_at and s.http_up_at
    ]
    served_new = [s.saw_new_at - t.change for s in stats if s.saw_new_at]
    kinds: collections.Counter[str] = collections.Counter()
    for s in stats:
        kinds.update(s.failure_kinds)
    latencies = [x for s in stats for x in s.latencies]
    calls = [c for c in o.calls if c.at < t.end]
    throttled = sum(c.faulted for c in calls)
    series = _per_second(calls, t.t0, t.end)
    peak = max(range(len(series)), key=lambda i: series[i][0])
    failed = [
        e
        for ev in o.events
        for e in ev
        if e.get("event") == "refresh_failed" and e.get("throttled")
    ]
    agents_failed = sum(1 for ev in o.events if any(e.get("event") == "refresh_failed" for e in ev))
    in_a_row = max((int(e.get("failures", 0)) for e in failed), default=0)
    ok = _metric_sum(o.metrics, "ssm_sidecar_source_requests_total", 'outcome="ok"')
    thr = _metric_sum(o.metrics, "ssm_sidecar_source_requests_total", 'outcome="throttled"')
    reads = sum(s.reads for s in stats)
    failures = sum(s.failures for s in stats)
    kinds_text = ", ".join(f"{k}: {n}" for k, n in kinds.most_common())
    return {
        "agents started (all Popen calls)": f"{count} in {t.spawned:.1f} s",
        "HTTP up per agent, from start (boot: imports, 2 shared cores)": _spread(up),
        "first requests released at once": (
            "-" if t.released is None else f"at {t.released - t.t0:.1f} s (all {count} waiting)"
        ),
        "**all ready** (/readyz 200, probed every 200 ms), from start": _deadline(
            t.all_ready, f"**{t.ready - t.t0:.1f} s**"
        ),
        "ready per agent, from start": _spread(ready),
        ("first load per agent (HTTP up -> ready; released: release -> ready)"): _spread(
            first_load
        ),
        "**highest request rate at the proxy** (1-s window)": (
            f"**{series[peak][0]} req/s** (second {peak}; {series[peak][1]} throttled)"
        ),
        "requests at the proxy / throttled": (
            f"{len(calls)} / {throttled} ({_share(throttled, len(calls))})"
        ),
        "throttled while starting (start -> all ready)": _window_throttled(calls, t.t0, t.ready),
        f"throttled in steady state ({STEADY_WINDOW:.0f} s)": _window_throttled(
            calls, t.ready, t.change
        ),
        "agents' SSM calls (source_requests_total) ok / throttled after botocore's retries": (
            f"{ok:.0f} / {thr:.0f}"
        ),
        "failed refresh cycles (throttled)": (
            f"{len(failed)} in {agents_failed} agents, at most {in_a_row} in a row"
        ),
        "**app reads after readiness / failed**": (
            f"{reads:,} / **{failures}**" + (f" ({kinds_text})" if kinds_text else "")
        ),
        "app read latency": (
            f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.1f} ms"
        ),
        f"**one PutParameter -> all {count} serve it**": _deadline(
            t.all_new, f"**{t.end - t.change:.1f} s**"
        )
        + f" ({_spread(served_new)})",
        "agents' RSS after ready: total (per agent)": (
            f"{mib(sum(o.rss_kb))} ({mib(int(statistics.mean(o.rss_kb)))}); "
            f"VmHWM total {mib(sum(o.hwm_kb))}"
        ),
    }


def _window_throttled(calls: Sequence[Call], start: float, end: float) -> str:
    inside = [c for c in calls if start <= c.at < end]
    series = _per_second(inside, start, end)
    throttled = sum(c.faulted for c in inside)
    return (
        f"{throttled} of {len(inside)} ({_share(throttled, len(inside))}); "
        f"mean {len(inside) / max(end - start, 1e-9):.1f} req/s, "
        f"max {max((a for a, _ in series), default=0)} req/s"
    )


def _series_table(o: Outcome) -> str:
    t = o.timeline
    series = _per_second([c for c in o.calls if c.at < t.end], t.t0, t.end)
    rows = []
    for start in range(0, len(series), 10):
        chunk = series[start : start + 10]
        if not any(a for a, _ in chunk):
            continue
        cells = [f"{a}" + (f" ({b})" if b else "") for a, b in chunk]
        rows.append([f"{start}-{start + len(chunk) - 1}", *cells, *[""] * (10 - len(chunk))])
    marks = f"all ready at {t.ready - t.t0:.1f} s, change at {t.change - t.t0:.1f} s"
    if t.released is not None:
        marks = f"released at {t.released - t.t0:.1f} s, " + marks
    return f"{o.scenario} ({marks}; seconds with no request left out):\n\n" + table(
        ["second", *[f"+{i}" for i in range(10)]], rows
    )


def _failures_line(o: Outcome) -> str:
    stamps = sorted(
        s - o.timeline.wall0
        for ev in o.events
        for e in ev
        if e.get("event") == "refresh_failed" and (s := _stamp(e)) is not None
    )
    shown = ", ".join(f"{x:.1f}" for x in stamps[:60]) or "none"
    return f"{o.scenario}: failed refresh cycles at (s from start): {shown}"


def report(outcomes: Sequence[Outcome], count: int) -> str:
    summaries = [summary(o) for o in outcomes]
    rows = [[key, *(s[key] for s in summaries)] for key in summaries[0]]
    pages = PARAMS // 10 + 1
    return (
        f"{count} agent processes started back to back against one FaultProxy in front of moto "
        f"that throttles above {QUOTA:.0f} req/s across all clients (token bucket, burst "
        f"{QUOTA:.0f}: the emulated account quota). Each agent: the same {PARAMS} parameters "
        f"under one path (half SecureString), interval {INTERVAL:g} s, jitter {JITTER}, "
        f"max_backoff {MAX_BACKOFF:g} s, `source.max_attempts = 3` (botocore standard "
        f"retries), `source.timeout = {SOURCE_TIMEOUT}`, HTTP on its own port. A quiet cycle of "
        f"{PARAMS} parameters is {PARAMS // 10} pages plus moto's empty last page = {pages} "
        f"calls at moto (real SSM: {PARAMS // 10}); the first load adds one decrypting "
        f"GetParameters. Steady state therefore needs {count} x {pages} / {INTERVAL:g} s = "
        f"{count * pages / INTERVAL:.0f} req/s of the {QUOTA:.0f} req/s quota. One app thread "
        "per agent probes `/readyz` every 200 ms (a startupProbe), then reads one SecureString "
        "through `GET /v1/parameters/{name}` every 200 ms; every read must answer 200 with "
        "the current value. Then one PutParameter (straight to moto).\n\n"
        f"- **{AS_STARTED}**: the processes just start together. On 2 shared cores their "
        "boots queue for CPU, which spreads the first loads over the last seconds of the boot.\n"
        f"- **{RELEASED}**: a gate (bench/herd_gate.py) holds every agent's first SSM request "
        f"until all {count} are waiting, then lets them through at one instant, as a fleet "
        "on many nodes would arrive.\n\n"
        + table(["measure", *(o.scenario for o in outcomes)], rows)
        + "\n\n<details><summary>Requests per second at the proxy (throttled in brackets), "
        "second 0 = the first Popen</summary>\n\n"
        + "\n\n".join(_series_table(o) for o in outcomes)
        + "\n\n"
        + "\n\n".join(_failures_line(o) for o in outcomes)
        + "\n\n</details>\n"
    )


# ------------------------------------------------------------------------------ the run


def measure(count: int, scenarios: Sequence[str]) -> str:
    moto = start_moto_server()
    try:
        params = mixed_parameters(PATH, PARAMS)
        watched = next(p for p in params if p.secure)
        seed(moto.url, params)
        outcomes = []
        with FaultProxy(moto.url) as proxy:
            for scenario in scenarios:
                value = f"{watched.value}-{scenario.replace(' ', '-')}"
                ssm = boto3_client("ssm", moto.url)
                ssm.put_parameter(
                    Name=watched.name, Value=value, Type="SecureString", Overwrite=True
                )
                ssm.close()
                outcomes.append(run_scenario(scenario, proxy, moto.url, count, watched.name, value))
        return report(outcomes, count)
    finally:
        moto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="Fleet herd against a 40 req/s quota.")
    parser.add_argument("--agents", type=int, default=AGENTS)
    parser.add_argument(
        "--scenario", choices=("both", AS_STARTED, RELEASED), default="both", help="which fleet"
    )
    args = parser.parse_args()
    scenarios = [AS_STARTED, RELEASED] if args.scenario == "both" else [args.scenario]
    return run("herd", "Fleet herd", "bench.herd", lambda: measure(args.agents, scenarios))


if __name__ == "__main__":
    sys.exit(main())
