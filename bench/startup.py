"""Start-up: agent process start -> `/readyz` 200 with 100, 1,000 and 10,000 parameters in moto,
with and without [files], and the agent's peak RSS (VmHWM) after the load.

The agent runs as a real process (`python -m agent run`), its source pointed at moto, HTTP on a
free loopback port. Parameters sit in groups of 100 under their own paths (see `_notes` for why),
half of them SecureStrings. Beside each size, the same SSM calls made by a plain sequential boto3
client (the "moto floor") show how much of the time is the backend's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BASELINE,
    CHILDREN,
    REPO,
    TOKEN_HEADER,
    Seed,
    agent_argv,
    agent_env,
    export_revision,
    http_get,
    mib,
    mixed_parameters,
    proc_status_kb,
    progress,
    seed,
    ssm_source,
    table,
    write_agent_config,
)
from bench.report import record, run
from tests.support.moto import boto3_client, free_port, start_moto_server
from tests.support.processes import cpu_seconds

GROUP = 100  # parameters per path
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None
PREFIX = "/bench/start"
SIZES = (100, 1_000, 10_000)
POLL = 0.02
READY_TIMEOUT = 600.0


@dataclass(frozen=True)
class Start:
    label: str  # "agent", or "agent @ REV (before)"
    size: int
    files: bool
    http_up: float  # process start -> first answer of /readyz (any status)
    ready: float  # process start -> /readyz 200
    files_done: float | None  # process start -> the first files set complete (all links exist)
    cpu_at_ready: float  # agent user + system seconds when /readyz said 200
    hwm_kb: int | None
    rss_kb: int | None


def group_path(g: int) -> str:
    return f"{PREFIX}/g{g:03d}"


def grouped_parameters(count: int) -> list[Seed]:
    """`count` parameters, GROUP to a path; the number in each name is unique, and so is its key
    (the name relative to its path), as the agent requires across paths."""
    return [
        Seed(f"{group_path(i // GROUP)}/p{i:05d}", p.value, p.secure)
        for i, p in enumerate(mixed_parameters(PREFIX, count))
    ]


def seed_all(endpoint_url: str, sizes: tuple[int, ...]) -> tuple[float, int]:
    params = grouped_parameters(max(sizes))
    return seed(endpoint_url, params), len(params)


def moto_floor(endpoint_url: str, size: int) -> tuple[float, int]:
    """The agent's first-load calls made by one sequential boto3 client: (seconds, calls)."""
    ssm = boto3_client("ssm", endpoint_url)
    calls, secure = 0, []
    started = time.monotonic()
    for g in range(size // GROUP):
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Path": group_path(g), "WithDecryption": False}
            if token:
                kwargs["NextToken"] = token
            reply = ssm.get_parameters_by_path(Recursive=True, MaxResults=10, **kwargs)
            calls += 1
            secure += [p["Name"] for p in reply["Parameters"] if p["Type"] == "SecureString"]
            token = reply.get("NextToken")
            if not token:
                break
    for i in range(0, len(secure), 10):
        ssm.get_parameters(Names=secure[i : i + 10], WithDecryption=True)
        calls += 1
    took = time.monotonic() - started
    ssm.close()
    return took, calls


def _config(work: Path, moto_url: str, size: int, files: bool, port: int) -> Path:
    config: dict[str, Any] = {
        "source": ssm_source(moto_url),
        "parameters": [{"path": group_path(g)} for g in range(size // GROUP)],
        "refresh": {"interval": "10m"},
        "http": {"listen": f"127.0.0.1:{port}", "token_file": str(work / "token")},
        "log": {"level": "info", "format": "json"},
    }
    if files:
        config["files"] = {"dir": str(work / "files")}
    return write_agent_config(work / "config.toml", config)


def _check_served(base: str, work: Path, size: int, files: bool) -> None:
    """The first and the last value over HTTP (and from the files) before the numbers count."""
    token = (work / "token").read_text().strip()
    for expected in (grouped_parameters(1)[0], grouped_parameters(size)[-1]):
        status = http_get(f"{base}/v1/parameters{expected.name}", {TOKEN_HEADER: token})
        if status != 200:
            raise RuntimeError(f"GET {expected.name} answered {status} after /readyz 200")
        key = expected.name.rpartition("/")[2]
        if files and (work / "files" / key).read_text() != expected.value:
            raise RuntimeError(f"the files set does not hold {expected.name}'s seeded value")


def _files_complete(data_link: Path, size: int) -> bool:
    """The set is swapped in (`..data`) and every top-level link to it exists (made after)."""
    if not os.path.lexists(data_link):
        return False
    return sum(1 for n in os.listdir(data_link.parent) if not n.startswith(".")) >= size


def start_once(
    moto_url: str, size: int, files: bool, work: Path, code: Path | None = None, label: str = ""
) -> Start:
    work.mkdir(parents=True)
    port = free_port()
    config = _config(work, moto_url, size, files, port)
    base = f"http://127.0.0.1:{port}"
    data_link = work / "files" / "..data"
    with (work / "agent.log").open("wb") as log:
        started = time.monotonic()
        env = agent_env(PYTHONPATH=str(code)) if code else agent_env()
        proc = CHILDREN.start(agent_argv(config), env=env, cwd=code or REPO, stderr=log)
    try:
        http_up = ready = files_done = None
        cpu = 0.0
        deadline = started + READY_TIMEOUT
        while ready is None or (files and files_done is None):
            now = time.monotonic()
            if files and files_done is None and _files_complete(data_link, size):
                files_done = now - started
            if ready is None:
                status = http_get(base + "/readyz", timeout=5.0)
                if status and http_up is None:
                    http_up = now - started
                if status == 200:
                    ready = now - started
                    cpu = cpu_seconds(proc.pid)
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited with {proc.returncode}; see {work}/agent.log")
            if now > deadline:
                raise TimeoutError(f"agent with {size} parameters not ready in {READY_TIMEOUT}s")
            time.sleep(POLL)
        _check_served(base, work, size, files)
        assert http_up is not None
        return Start(
            label or "agent",
            size,
            files,
            http_up,
            ready,
            files_done,
            cpu,
            proc_status_kb(proc.pid, "VmHWM"),
            proc_status_kb(proc.pid, "VmRSS"),
        )
    finally:
        CHILDREN.stop(proc)


def _row(runs: list[Start], floor: tuple[float, int]) -> list[object]:
    first = runs[0]
    readies = [r.ready for r in runs]
    gaps = [r.files_done - r.ready for r in runs if r.files_done is not None]
    return [
        first.label,
        f"{first.size:,}",
        "yes" if first.files else "no",
        len(runs),
        f"{statistics.median(r.http_up for r in runs):.2f} s",
        f"**{statistics.median(readies):.2f} s** ({', '.join(f'{x:.2f}' for x in readies)})",
        f"{statistics.median(gaps):+.2f} s" if gaps else "-",
        f"{statistics.median(r.cpu_at_ready for r in runs):.2f} s",
        f"{floor[0]:.2f} s ({floor[1]} calls)",
        mib(max((r.hwm_kb or 0) for r in runs)),
        mib(max((r.rss_kb or 0) for r in runs)),
    ]


def _record(runs: list[Start], which: str) -> None:
    first = runs[0]
    record(
        f"{which}/{first.size}/{'files' if first.files else 'nofiles'}",
        {
            "label": first.label,
            "ready_s": round(statistics.median(r.ready for r in runs), 3),
            "ready_runs_s": [round(r.ready, 3) for r in runs],
            "http_up_s": round(statistics.median(r.http_up for r in runs), 3),
            "vmhwm_mib": round(max((r.hwm_kb or 0) for r in runs) / 1024, 1),
        },
    )


def _notes(seed_seconds: float, seeded: int) -> str:
    return (
        f"- Seeding moto (not part of any start-up): {seeded:,} PutParameter calls from 8 boto3 "
        f"threads (`bench.common.seed`) took {seed_seconds:.1f} s "
        f"({seeded / seed_seconds:,.0f}/s).\n"
        f"- Parameters sit in groups of {GROUP} under their own paths (`{PREFIX}/g000/p00000` "
        "...), one `[[parameters]] path` each, half of them SecureStrings (moto's default key), "
        "values of 35 bytes. moto rebuilds a path's whole listing for every page of 10, so one "
        "path of 10,000 is O(N^2) in moto alone: measured once on this machine, listing 10,000 "
        "parameters under one path took 124 s (1,001 pages) before any agent work. Groups keep "
        "the backend's share linear. moto's extra empty page adds one call per group.\n"
        '- "start -> HTTP up": process start until `/readyz` first answers (503): interpreter, '
        'imports, config, HTTP bind; the first load starts about then. "start -> /readyz 200": '
        'the median of the runs (each run in brackets), polled every 20 ms. "CPU at ready": the '
        "agent process's user + system time at that moment.\n"
        '- "ready -> files set": when the first files set was complete (`..data` swapped in '
        "and every top-level link made; polled every 20 ms), relative to the first `/readyz` "
        "200. Positive = `/readyz` said ready *before* the files existed: the refresher sets "
        "ready and then publishes, and the files are written in a worker thread.\n"
        '- "moto floor": the same SSM calls (every path listed without decryption, then '
        "GetParameters in tens with decryption for the SecureStrings) from one sequential boto3 "
        "client in the benchmark process: what the backend alone costs. The agent makes its "
        "first load's calls up to 8 at a time (`agent/sources/parallel.py`), within its own "
        "call budget (`source.max_calls_per_second`, `max_calls_burst`); against real SSM the "
        "account's quota (40 req/s by default) bounds it: 1,600 calls take 40 s.\n"
        "- The agents' files.dir is on tmpfs (`/dev/shm`), as in a pod (an emptyDir with "
        "`medium: Memory`).\n"
        "- Peak RSS: VmHWM of the agent process from /proc after `/readyz` 200 (and the files "
        "set, when written), the highest of the runs; RSS is VmRSS at the same moment.\n"
    )


def measure(
    repeat: int, repeat_10k: int, sizes: tuple[int, ...] = SIZES, before: str | None = None
) -> str:
    moto = start_moto_server()
    try:
        progress(f"start-up: seeding {max(sizes):,} parameters into moto")
        seed_seconds, seeded = seed_all(moto.url, sizes)
        progress(f"start-up: seeded {seeded:,} in {seed_seconds:.1f} s")
        rows = []
        # files.dir on tmpfs, as in a pod (an emptyDir with medium: Memory): on a disk, the
        # one syncfs per files set also flushes whatever else the machine has written.
        with tempfile.TemporaryDirectory(prefix="bench-startup-", dir=TMPFS) as tmp:
            # (label, code dir): this tree, and the agent at `before` exported beside it.
            agents: list[tuple[str, Path | None]] = [("agent", None)]
            if before:
                code = export_revision(before, Path(tmp) / "before-code")
                if code is None:
                    progress(f"start-up: git revision {before} unavailable; no 'before' rows")
                else:
                    agents.append((f"agent @ {before} (before)", code))
            for size in sizes:
                floor = moto_floor(moto.url, size)
                progress(f"start-up: moto floor for {size:,}: {floor[0]:.2f} s, {floor[1]} calls")
                # The before rows at 10,000 would double the longest part for a shape only.
                compared = agents if size < 10_000 else agents[:1]
                runs: dict[tuple[str, bool], list[Start]] = {
                    (label, files): [] for label, _ in compared for files in (False, True)
                }
                # Alternated, so that a burst of load from elsewhere hits every kind alike.
                for i in range(repeat_10k if size >= 10_000 else repeat):
                    for (label, code), files in (
                        (agent, files) for agent in compared for files in (False, True)
                    ):
                        work = (
                            Path(tmp)
                            / f"n{size}-files{int(files)}-{i}-{agents.index((label, code))}"
                        )
                        r = start_once(moto.url, size, files, work, code, label)
                        gap = (
                            ""
                            if r.files_done is None
                            else f", files {r.files_done - r.ready:+.2f} s"
                        )
                        progress(
                            f"start-up: {label} {size:,} files={files}: ready {r.ready:.2f} s "
                            f"(HTTP up {r.http_up:.2f} s), CPU {r.cpu_at_ready:.2f} s, "
                            f"VmHWM {mib(r.hwm_kb)}{gap}"
                        )
                        runs[(label, files)].append(r)
                rows += [_row(r, floor) for r in runs.values()]
                for (label, _), done in runs.items():
                    _record(done, "before" if label != "agent" else "after")
    finally:
        moto.stop()
    return (
        "Agent process start -> `/readyz` 200, a real process against moto on loopback (no "
        "proxy), `source.max_attempts = 3`, refresh interval 10 min (only the first load runs), "
        "log level info.\n\n"
        + table(
            [
                "agent",
                "parameters",
                "[files]",
                "runs",
                "start -> HTTP up",
                "start -> /readyz 200",
                "ready -> files set",
                "CPU at ready",
                "moto floor",
                "peak RSS (VmHWM)",
                "RSS",
            ],
            rows,
        )
        + "\n\nNotes:\n\n"
        + _notes(seed_seconds, seeded)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="Start-up time and peak RSS of the agent.")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case up to 1,000")
    parser.add_argument("--repeat-10k", type=int, default=2, help="runs per 10,000 case")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="parameter counts, comma-separated"
    )
    parser.add_argument(
        "--before",
        default=BASELINE,
        help=f"git revision measured beside this tree up to 1,000 parameters (default {BASELINE}, "
        "main when issue #15 was filed); '' for none",
    )
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    return run(
        "startup",
        "Start-up time and peak RSS",
        "bench.startup",
        lambda: measure(args.repeat, args.repeat_10k, sizes, args.before or None),
    )


if __name__ == "__main__":
    sys.exit(main())
