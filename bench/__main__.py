"""`make bench` / `python -m bench [--only NAME,...]`: every benchmark, one after the other.

Each benchmark is its own program (`python -m bench.NAME`) that prints progress on stderr, its
Markdown section on stdout, and writes that section into docs/benchmarks.md (bench/report.py).
This runner starts them in order, in the runner's own process group, so Ctrl-C reaches the
running benchmark too (which then stops everything it started).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from types import FrameType

from bench.common import PYTHON, REPO, progress

#: name -> module, in the order they run (the noisiest machine load last).
BENCHMARKS = {
    "serving": "bench.serving",
    "propagation": "bench.propagation",
    "startup": "bench.startup",
    "cli_start": "bench.cli_start",
    "backend_cost": "bench.backend_cost",
    "secrets_cost": "bench.secrets_cost",
    "redaction": "bench.redaction",
    "conn_flood": "bench.conn_flood",
    "guard_cost": "bench.guard_cost",
    "herd": "bench.herd",
    "fleet": "bench.fleet",
    "peers": "bench.peers",
    # Last: reads what the others recorded (bench/results/) and measures nothing.
    "goals": "bench.goals",
}


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip().replace("-", "_") for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    # The goals table is rebuilt after any benchmark, so it never shows figures older than
    # the sections below it.
    return [*names, "goals"] if "goals" not in names else names


def _run(module: str) -> int:
    proc = subprocess.Popen([PYTHON, "-m", module], cwd=REPO)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The benchmark got the same SIGINT and is stopping its children: give it the time.
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _forward_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help=f"comma-separated: {', '.join(BENCHMARKS)}")
    names = _selected(parser.parse_args().only)
    signal.signal(signal.SIGTERM, _forward_sigterm)
    outcomes: list[tuple[str, str, float]] = []
    for name in names:
        module = BENCHMARKS[name]
        if not (REPO / (module.replace(".", "/") + ".py")).exists():
            outcomes.append((name, "missing", 0.0))
            continue
        progress(f"=== {name} ({module})")
        started = time.monotonic()
        code = _run(module)
        outcomes.append(
            (name, "ok" if code == 0 else f"failed ({code})", time.monotonic() - started)
        )
    for name, outcome, seconds in outcomes:
        progress(f"{name:14s} {outcome:12s} {seconds:6.0f} s")
    return 0 if all(outcome in ("ok", "missing") for _, outcome, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
