"""Import time, wall time and peak RSS of the light commands (`--version`, `check`, `get`), this
tree against a git revision exported beside it, alternated in one run. Prints a markdown table.

    .venv/bin/python -m bench.cli_start --before REV [--runs 7]

Import time is the sum of the top-level entries of `python -X importtime` (site included);
the figures are the minimum and the median of the runs. `get` asks a port where nothing listens.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, export_revision, table

TOP_LEVEL = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S+)$", re.M)


def _commands(work: Path) -> dict[str, list[str]]:
    (work / "values.toml").write_text('"/app/x" = "1"\n')
    (work / "config.toml").write_text(
        f'[source]\ntype = "file"\npath = "{work}/values.toml"\n[[parameters]]\npath = "/app"\n'
    )
    (work / "token").write_text("t")
    return {
        "--version": ["--version"],
        "check": ["check", "-c", str(work / "config.toml")],
        "get": ["get", "--url", "http://127.0.0.1:1", "--token-file", str(work / "token"), "/x"],
    }


def measure(code: Path, argv: list[str], runs: int) -> tuple[list[float], list[float], int]:
    env = {"PYTHONPATH": str(code)}
    imports, walls = [], []
    for _ in range(runs):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "agent", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=code,
        )
        walls.append(time.monotonic() - started)
        imports.append(sum(int(m.group(1)) for m in TOP_LEVEL.finditer(done.stderr)) / 1e6)
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "agent", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
    )
    return imports, walls, int(done.stderr.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        before = export_revision(args.before, Path(tmp) / "before")
        if before is None:
            print(f"revision {args.before} unavailable", file=sys.stderr)
            return 1
        for name, argv in _commands(Path(tmp)).items():
            for label, code in ((f"@ {args.before} (before)", before), ("this tree", REPO)):
                imports, walls, kib = measure(code, argv, args.runs)
                rows.append(
                    [
                        f"`{name}`",
                        label,
                        f"{min(imports):.3f} s ({statistics.median(imports):.3f})",
                        f"{min(walls):.3f} s ({statistics.median(walls):.3f})",
                        f"{kib / 1024:.0f} MiB",
                    ]
                )
    print(
        table(
            ["command", "agent", "import time min (median)", "wall min (median)", "max RSS"], rows
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
