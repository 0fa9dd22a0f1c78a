"""docs/benchmarks.md: run one benchmark as a program and write its section there.

Like bench/section_runner.py (whose `write_section` does the writing), but into
docs/benchmarks.md: every child process is ended on any exit (Ctrl-C and SIGTERM included), and
the section carries the command, the date and the machine facts.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench.common import CHILDREN, REPO, machine_facts, progress, table
from bench.section_runner import write_section

DOC = REPO / "docs" / "benchmarks.md"


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
    progress(f"{key}: written to {doc.relative_to(REPO)} ({took:.0f} s)")
    return 0
