"""Issue #15's goals, before and after, read from the results the other benchmarks recorded.

`make bench` runs this last; it measures nothing itself. Each row names the benchmark run it
comes from (bench/results/NAME.json: date, commit, load at its start), so a figure from an older
run than the others is visible as such. "before" is BASELINE (main when the issue was filed),
measured beside this tree in the same runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import BASELINE, table
from bench.report import RESULTS, run

#: Which commits changed each goal's figure (main's history; `git show` them for the why).
CHANGED_BY = {
    "memory": ["b610f4e", "1650138", "c1ad761", "15c9def", "bd79c4c"],
    "startup": ["362fa77", "286e9e1", "714162c"],
    "cli": ["5f8e524"],
    "serving": ["ffb152d", "d9c5372", "2788c2b", "22183f1", "2617dce"],
    "propagation": [],  # a goal to keep, not to move
}

Results = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Goal:
    key: str  # CHANGED_BY's key
    claim: str
    target: str
    source: str  # the benchmark whose results hold the figure
    figure: Callable[[dict[str, Any], str], float | None]  # (figures, "before"/"after")
    fmt: str
    met: Callable[[float], bool]


def _get(figures: dict[str, Any], *path: str) -> Any:
    node: Any = figures
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _serving(route: str, connections: int) -> Callable[[dict[str, Any], str], float | None]:
    return lambda f, which: _get(f, f"{connections}/{which}/{route}", "ratio_cpu")


def _cli(command: str) -> Callable[[dict[str, Any], str], float | None]:
    return lambda f, which: _get(f, f"{which}/{command}", "import_s_median")


def _propagation_served(f: dict[str, Any], which: str) -> float | None:
    p99, interval = _get(f, which, "served_p99_s"), _get(f, which, "interval_s")
    return None if p99 is None or interval is None else (p99 - interval) * 1e3


GOALS = [
    Goal(
        "memory",
        "peak RSS (VmHWM), 1,000 parameters, SSM source, HTTP + files",
        "<= 60 MiB",
        "startup",
        lambda f, which: _get(f, f"{which}/1000/files", "vmhwm_mib"),
        "{:.1f} MiB",
        lambda v: v <= 60,
    ),
    Goal(
        "startup",
        "start -> `/readyz` 200, 1,000 parameters, without files",
        "<= 1.5 s",
        "startup",
        lambda f, which: _get(f, f"{which}/1000/nofiles", "ready_s"),
        "{:.2f} s",
        lambda v: v <= 1.5,
    ),
    Goal(
        "startup",
        "start -> `/readyz` 200, 1,000 parameters, with files",
        "<= 1.5 s",
        "startup",
        lambda f, which: _get(f, f"{which}/1000/files", "ready_s"),
        "{:.2f} s",
        lambda v: v <= 1.5,
    ),
    *(
        Goal(
            "cli",
            f"`ssm-sidecar {command}`: import time (median)",
            "< 0.2 s",
            "cli-start",
            _cli(command.lstrip("-")),
            "{:.3f} s",
            lambda v: v < 0.2,
        )
        for command in ("--version", "check", "get")
    ),
    Goal(
        "serving",
        "`GET /v1/parameters/{name}`, CPU per request vs bare aiohttp, 16 connections",
        ">= 0.95",
        "serving",
        _serving("v1", 16),
        "{:.2f}",
        lambda v: v >= 0.95,
    ),
    Goal(
        "serving",
        "extension route, CPU per request vs bare aiohttp, 16 connections",
        ">= 0.95",
        "serving",
        _serving("extension", 16),
        "{:.2f}",
        lambda v: v >= 0.95,
    ),
    Goal(
        "propagation",
        "PutParameter -> served, p99 minus the interval (1 s)",
        "<= 100 ms",
        "propagation",
        _propagation_served,
        "{:.0f} ms",
        lambda v: v <= 100,
    ),
    Goal(
        "propagation",
        "signal after the file, p99 (debounce 0 s)",
        "<= 50 ms",
        "propagation",
        lambda f, which: (
            None
            if _get(f, which, "signal_after_file_p99_s") is None
            else _get(f, which, "signal_after_file_p99_s") * 1e3
        ),
        "{:.1f} ms",
        lambda v: v <= 50,
    ),
]


def _load() -> Results:
    found: Results = {}
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        found[data["benchmark"]] = data
    return found


def _cell(goal: Goal, results: Results, which: str) -> tuple[str, float | None]:
    data = results.get(goal.source)
    value = None if data is None else goal.figure(data["figures"], which)
    return ("-" if value is None else goal.fmt.format(value)), value


def _source(data: dict[str, Any] | None) -> str:
    if data is None:
        return "not run"
    return f"{data['benchmark']}, {data['date']} at {data['commit']} (load {data['load_at_start']})"


def _informative(results: Results) -> list[list[str]]:
    """Figures the issue asks to report, without a target."""
    rows = []
    serving = results.get("serving", {}).get("figures", {})
    for n in (16, 256):
        for route, name in (("v1", "`/v1/parameters/{name}`"), ("extension", "extension route")):
            after = serving.get(f"{n}/after/{route}")
            if after:
                rows.append(
                    [
                        f"{name}, {n} connections",
                        f"{after['rps_best']:,} req/s, p99 {after['p99_ms']:.1f} ms, "
                        f"CPU ratio {after['ratio_cpu']:.2f}",
                    ]
                )
    for key, name in (("read/file", "a read of the file"), ("read/http", "an HTTP read")):
        cost = serving.get(key)
        if cost:
            rows.append(
                [
                    f"{name} (Python app)",
                    f"{cost['wall_us']:.1f} us wall, app CPU {cost['app_cpu_us']:.1f} us, "
                    f"agent CPU {cost['agent_cpu_us']:.1f} us",
                ]
            )
    peers = results.get("peers", {}).get("figures", {})
    for key, idle in sorted(peers.items()):
        cpu = idle["cpu_per_connection_us"]
        added, control = cpu["with"] - cpu["without"], cpu["control"] - cpu["without"]
        rows.append(
            [
                f"peer-uid lookup per new connection ({key.split('/')[1]} idle connections)",
                f"netlink {idle['netlink_lookup_us']:.1f} us; agent CPU per new connection "
                f"{added:+.0f} us (control {control:+.0f})",
            ]
        )
    return rows


def measure() -> str:
    results = _load()
    rows = []
    for goal in GOALS:
        before, _ = _cell(goal, results, "before")
        after, value = _cell(goal, results, "after")
        met = "-" if value is None else ("yes" if goal.met(value) else "**no**")
        rows.append(
            [
                goal.claim,
                goal.target,
                before,
                after,
                met,
                ", ".join(CHANGED_BY[goal.key]) or "-",
                _source(results.get(goal.source)),
            ]
        )
    return (
        f"Issue #15's goals. Before = main at {BASELINE} (when the issue was filed), measured "
        "beside this tree in the same benchmark run; the figures come from the sections below "
        "(`bench/results/*.json`).\n\n"
        + table(
            ["goal", "target", f"before ({BASELINE})", "after", "met", "changed by", "from"],
            rows,
        )
        + "\n\nReported without a target:\n\n"
        + table(["figure", "after"], _informative(results))
    )


def main() -> int:
    return run(
        "goals", "Lean and fast: issue #15's goals, before and after", "bench.goals", measure
    )


if __name__ == "__main__":
    sys.exit(main())
