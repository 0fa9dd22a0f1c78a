"""Import time, wall time and peak RSS of the light commands (`--version`, `check`, `get`), this
tree against a git revision exported beside it (default: main when issue #15 was filed).

    .venv/bin/python -m bench.cli_start [--before REV] [--runs 7]

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

from bench.common import BASELINE, REPO, export_revision, table
from bench.report import record, run

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


def compare(before_rev: str, runs: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        before = export_revision(before_rev, Path(tmp) / "before")
        if before is None:
            raise SystemExit(f"revision {before_rev} unavailable")
        for name, argv in _commands(Path(tmp)).items():
            for which, label, code in (
                ("before", f"@ {before_rev} (before)", before),
                ("after", "this tree", REPO),
            ):
                imports, walls, kib = measure(code, argv, runs)
                record(
                    f"{which}/{name.lstrip('-')}",
                    {
                        "import_s_min": round(min(imports), 3),
                        "import_s_median": round(statistics.median(imports), 3),
                        "wall_s_min": round(min(walls), 3),
                        "max_rss_mib": round(kib / 1024, 1),
                    },
                )
                rows.append(
                    [
                        f"`{name}`",
                        label,
                        f"{min(imports):.3f} s ({statistics.median(imports):.3f})",
                        f"{min(walls):.3f} s ({statistics.median(walls):.3f})",
                        f"{kib / 1024:.0f} MiB",
                    ]
                )
    return (
        f"`ssm-sidecar --version`, `check` and `get` ({runs} runs each, alternated with the "
        "before tree): import time is the sum of the top-level entries of `python -X "
        "importtime` (site included), min and (median); wall is process start to exit; max RSS "
        "from `/usr/bin/time`. `get` asks a port where nothing listens.\n\n"
        + table(
            ["command", "agent", "import time min (median)", "wall min (median)", "max RSS"], rows
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    return run(
        "cli-start",
        "CLI start-up: the light commands",
        "bench.cli_start",
        lambda: compare(args.before, args.runs),
    )


if __name__ == "__main__":
    sys.exit(main())
