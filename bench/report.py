"""Runs one benchmark as a program and writes its Markdown section into docs/benchmarks.md.

Every child process is ended on any exit (Ctrl-C and SIGTERM included). The section carries the
command, the date and the machine facts, and goes between its own
`<!-- bench:KEY:begin/end -->` markers: rerunning one benchmark replaces only its section.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench.common import CHILDREN, REPO, machine_facts, progress, table

DOC = REPO / "docs" / "benchmarks.md"


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
