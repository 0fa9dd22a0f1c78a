"""Runs one benchmark as a program: every child process is ended on any exit (Ctrl-C and SIGTERM
included), the Markdown section is printed and written, with the machine facts, the command and
the date, between its own markers in a docs file; the file's other sections are left as they are.
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

DOC = REPO / "docs" / "benchmarks-cost-startup-herd.md"
DOC_HEADER = """# Benchmarks: backend cost, start-up and fleet herd

Measured numbers for issue #7 (items 3, 4 and 5). Each section below is written by its own
command, with the machine it ran on and the date; rerun the command to refresh that section
only. Benchmarks are not tests: CI does not run them. Numbers against moto (a local SSM
emulator on loopback) show counts exactly and times only in shape: real SSM is a network away.
"""


def _markers(key: str) -> tuple[str, str]:
    return f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"


def write_section(doc: Path, key: str, text: str) -> None:
    """Replace the section `key` in `doc` (or append it); creates `doc` with a header."""
    begin, end = _markers(key)
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    current = doc.read_text() if doc.exists() else DOC_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    tmp = doc.with_suffix(doc.suffix + ".tmp")
    tmp.write_text(updated)
    tmp.replace(doc)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def command_line(module: str) -> str:
    return shlex.join([".venv/bin/python", "-m", module, *sys.argv[1:]])


def run(key: str, title: str, module: str, measure: Callable[[], str]) -> int:
    """Measure, then print and write the section; children are stopped whatever happens."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    facts = machine_facts()
    started = time.monotonic()
    try:
        body = measure()
    finally:
        CHILDREN.stop_all()
    took = time.monotonic() - started
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    facts += [("load average at end (1/5/15 min)", load_end), ("run time", f"{took:.0f} s")]
    section = (
        f"## {title}\n\n"
        f"Command: `{command_line(module)}`\n\n"
        f"{body.rstrip()}\n\n"
        f"<details><summary>Machine</summary>\n\n{table(['fact', 'value'], facts)}\n\n"
        "</details>\n"
    )
    print(section)
    write_section(DOC, key, section)
    progress(f"{key}: written to {DOC.relative_to(REPO)} ({took:.0f} s)")
    return 0
