"""Runs one benchmark as a program and writes its Markdown section into docs/benchmarks.md.

Every child process is ended on any exit (Ctrl-C and SIGTERM included). The section carries the
command, the date and the machine facts, and goes between its own
`<!-- bench:KEY:begin/end -->` markers: rerunning one benchmark replaces only its section.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import CHILDREN, REPO, machine_facts, progress, table

DOC = REPO / "docs" / "benchmarks.md"
#: Each benchmark's headline figures as JSON (`record`), read by bench/goals.py.
RESULTS = REPO / "bench" / "results"
_figures: dict[str, Any] = {}


def record(name: str, value: Any) -> None:
    """Keep a figure for this run's results file (written by `run` next to the section)."""
    _figures[name] = value


def write_section(doc: Path, key: str, text: str) -> None:
    """Replace the section `key` in `doc`, or append it (creating `doc` if need be)."""
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    current = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(current):
        # A function, not a string: the section's text may hold backslashes.
        updated = pattern.sub(lambda _: block, current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    tmp = doc.with_suffix(doc.suffix + ".tmp")
    tmp.write_text(updated)
    tmp.replace(doc)


def _write_results(
    key: str, command: str, load_at_start: float, facts: dict[str, str], took: float
) -> None:
    RESULTS.mkdir(exist_ok=True)
    data = {
        "benchmark": key,
        "command": command,
        "date": facts.get("date (UTC)"),
        "commit": _head_commit(),
        "load_at_start": round(load_at_start, 2),
        "run_time_s": round(took),
        "figures": _figures,
    }
    path = RESULTS / f"{key}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _head_commit() -> str | None:
    """HEAD, with "+changes" when the code measured differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "agent", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head}+changes" if head and changed else head or None


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(key: str, title: str, module: str, measure: Callable[[], str], doc: Path = DOC) -> int:
    """Measure, then print the section and write it between its markers in `doc`."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    facts = machine_facts()
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    try:
        body = measure()
    finally:
        CHILDREN.stop_all()
    took = time.monotonic() - started
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    facts += [("load average at end (1/5/15 min)", load_end), ("run time", f"{took:.0f} s")]
    # At the start only: during the run the benchmark's own processes add to the load.
    if load_at_start > (os.cpu_count() or 1):
        warning = (
            f"**Warning: the 1-minute load average was {load_at_start:.1f} on {os.cpu_count()} "
            "CPUs when this run started: other work shared the machine, so the times below are "
            "less reliable than usual; rerun on a quiet machine.**\n\n"
        )
        body = warning + body
        progress(warning.strip("*\n"))
    command = shlex.join([".venv/bin/python", "-m", module, *sys.argv[1:]])
    section = (
        f"## {title}\n\n"
        f"Command: `{command}` (or `make bench ONLY={key}`)\n\n"
        f"{body.rstrip()}\n\n"
        f"<details><summary>Machine</summary>\n\n{table(['fact', 'value'], facts)}\n\n"
        "</details>\n"
    )
    print(section)
    write_section(doc, key, section)
    if _figures and doc == DOC:
        _write_results(key, command, load_at_start, dict(facts), took)
    progress(f"{key}: written to {doc.relative_to(REPO)} ({took:.0f} s)")
    return 0
