"""Propagation: PutParameter -> new value served over HTTP, file updated, signal received.

Each agent process (this tree, then the `--before` revision) polls moto every `interval` (jitter
0.1, the default) with files.dir and a pid_file notify target: a small app process that appends
`time.monotonic()` to a log on every SIGHUP (CLOCK_MONOTONIC is system-wide, so its stamps compare
with ours). For each change the benchmark stamps the moment it calls PutParameter, then waits on
three watchers at once: an HTTP long-poll (`If-None-Match` + `?wait=`, answered the moment the
snapshot swaps), a 1 ms poll of the file, and the app's SIGHUP log. Between changes it pauses a
random 0..interval, so changes land at every phase of the poll cycle.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.common import (
    BASELINE,
    CHILDREN,
    PYTHON,
    TOKEN_HEADER,
    agent_argv,
    agent_env,
    export_revision,
    ms,
    percentile,
    progress,
    ssm_source,
    table,
    wait_for_ready,
    write_agent_config,
)
from bench.report import record
from tests.support.moto import boto3_client, free_port, start_moto_server

KEY = "value"
TIMEOUT = 15.0

# Appends "<monotonic>" for every SIGHUP; sigwait, so no Python signal handler delays the stamp.
SIGNAL_STAMPER = r"""
import signal, sys, time
log = sys.argv[1]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM})
while True:
    if signal.sigwait({signal.SIGHUP, signal.SIGTERM}) == signal.SIGTERM:
        sys.exit(0)
    stamp = time.monotonic()
    with open(log, "a") as f:
        f.write(f"{stamp}\n")
"""


@dataclass(frozen=True)
class Change:
    http: float
    file: float
    signal: float


def _long_poll(url: str, token: str, etag: str, found: dict[str, float]) -> None:
    """GET with If-None-Match until the version differs; records when the new value came."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        request = urllib.request.Request(  # noqa: S310 (loopback)
            url + "?wait=10s", headers={TOKEN_HEADER: token, "If-None-Match": etag}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:  # noqa: S310
                reply.read()
                if reply.status == 200:
                    found["http"] = time.monotonic()
                    return
        except urllib.error.HTTPError as exc:
            if exc.code != 304:
                raise


def _poll_file(path: Path, value: str, found: dict[str, float]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if path.read_text() == value:
                found["file"] = time.monotonic()
                return
        except OSError:
            pass
        time.sleep(0.001)


def _signal_after(log: Path, since: float) -> float | None:
    try:
        stamps = [float(line) for line in log.read_text().split()]
    except OSError:
        return None
    later = [s for s in stamps if s >= since]
    return min(later) if later else None


def _one_change(
    ssm: Any, i: int, name: str, url: str, token: str, files: Path, hup_log: Path, etag: str
) -> Change:
    value = f"value-{i:03d}-{random.getrandbits(32):08x}"
    found: dict[str, float] = {}
    watchers = [
        threading.Thread(target=_long_poll, args=(url, token, etag, found), daemon=True),
        threading.Thread(target=_poll_file, args=(files / KEY, value, found), daemon=True),
    ]
    for w in watchers:
        w.start()
    time.sleep(0.01)  # the long-poll is parked in the agent before the change is made
    started = time.monotonic()
    ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    for w in watchers:
        w.join(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    signalled = _signal_after(hup_log, started)
    while signalled is None and time.monotonic() < deadline:
        time.sleep(0.005)
        signalled = _signal_after(hup_log, started)
    if "http" not in found or "file" not in found or signalled is None:
        raise RuntimeError(f"change {i}: not propagated within {TIMEOUT:.0f}s: {found}")
    return Change(found["http"] - started, found["file"] - started, signalled - started)


def measure(
    changes: int = 50, interval: float = 1.0, seed: int = 7, before: str | None = None
) -> str:
    moto = start_moto_server()
    sections = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-propagation-") as tmp:
            agents: list[tuple[str, str, Path | None]] = [("after", "agent", None)]
            if before:
                code = export_revision(before, Path(tmp) / "before-code")
                if code is None:
                    progress(f"propagation: git revision {before} unavailable; no 'before' run")
                else:
                    agents.append(("before", f"agent @ {before} (before)", code))
            for which, label, code in agents:
                work = Path(tmp) / which
                work.mkdir()
                results = _changes(moto.url, work, code, changes, interval, random.Random(seed))
                sections.append(_report(results, interval, which, label))
    finally:
        moto.stop()
    return _intro(changes, interval) + "\n\n".join(sections)


def _changes(
    moto_url: str,
    work: Path,
    code: Path | None,
    changes: int,
    interval: float,
    rng: random.Random,
) -> list[Change]:
    """`changes` PutParameters against one agent started from `code` (None: this tree)."""
    path = f"/bench/prop-{work.name}"
    name = f"{path}/{KEY}"
    ssm = boto3_client("ssm", moto_url)
    ssm.put_parameter(Name=name, Value="initial", Type="String")
    ssm.put_parameter(Name=f"{path}/other", Value="x", Type="SecureString")
    hup_log = work / "hup.log"
    app = CHILDREN.start([PYTHON, "-c", SIGNAL_STAMPER, str(hup_log)])
    (work / "app.pid").write_text(f"{app.pid}\n")
    port = free_port()
    config = write_agent_config(
        work / "config.toml",
        {
            "source": ssm_source(moto_url),
            "parameters": [{"path": path}],
            "refresh": {"interval": f"{interval}s", "jitter": 0.1},
            "http": {"listen": f"127.0.0.1:{port}", "token_file": str(work / "token")},
            "files": {"dir": str(work / "files")},
            "notify": {"pid_file": str(work / "app.pid"), "debounce": "0s"},
            "log": {"level": "warning"},
        },
    )
    env = agent_env()
    if code is not None:
        env["PYTHONPATH"] = str(code)
    agent = CHILDREN.start(agent_argv(config), env=env, cwd=code)
    base = f"http://127.0.0.1:{port}"
    wait_for_ready(base, agent, timeout=30)
    token = (work / "token").read_text().strip()
    results: list[Change] = []
    for i in range(1, changes + 1):
        etag = f'"{i}"'  # version i is served; the change makes i + 1
        results.append(
            _one_change(
                ssm, i, name, base + "/v1/parameters" + name, token, work / "files", hup_log, etag
            )
        )
        if i % 10 == 0:
            last = results[-1]
            progress(
                f"propagation {work.name} {i}/{changes}: last change served {ms(last.http)}, "
                f"file {ms(last.file)}, signal {ms(last.signal)}"
            )
        time.sleep(rng.uniform(0, interval))  # a new phase of the poll cycle
    CHILDREN.stop(agent)
    CHILDREN.stop(app)
    ssm.close()
    return results


def _intro(changes: int, interval: float) -> str:
    return (
        f"{changes} changes (PutParameter on moto) per agent, "
        f'`refresh.interval = "{interval:g}s"`, '
        '`jitter = 0.1`, `notify.debounce = "0s"` (the default `1s` delays the signal by that '
        "second: a trailing-edge window that coalesces a burst of changes into one signal), "
        "`source.max_attempts = 3`; the agent reads moto directly. Times from the moment the "
        "PutParameter call was made. A change waits for the next poll, so the HTTP row is "
        "roughly uniform over one interval (+-10% jitter) plus one refresh cycle.\n\n"
    )


def _report(results: list[Change], interval: float, which: str, label: str) -> str:
    rows = []
    for observed, values in (
        ("new value served over HTTP", [r.http for r in results]),
        ("file in files.dir updated", [r.file for r in results]),
        ("SIGHUP received by the app", [r.signal for r in results]),
    ):
        rows.append(
            [
                observed,
                ms(min(values)),
                ms(percentile(values, 50)),
                ms(percentile(values, 99)),
                ms(max(values)),
            ]
        )
    after_http = [r.signal - r.http for r in results]
    after_file = [r.signal - r.file for r in results]
    record(
        which,
        {
            "label": label,
            "interval_s": interval,
            "served_p99_s": round(percentile([r.http for r in results], 99), 4),
            "file_p99_s": round(percentile([r.file for r in results], 99), 4),
            "signal_p99_s": round(percentile([r.signal for r in results], 99), 4),
            "signal_after_file_p99_s": round(percentile(after_file, 99), 4),
        },
    )
    return (
        f"**{label}**\n\n"
        + table(["observed", "min", "p50", "p99", "max"], rows)
        + f"\n\nThe signal follows the served value by {ms(percentile(after_http, 50))} (p50) "
        f"and {ms(percentile(after_http, 99))} (p99), the file by "
        f"{ms(percentile(after_file, 50))} (p50) and {ms(percentile(after_file, 99))} (p99): "
        "the files are written and the snapshot served before the app is told."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0, help="refresh.interval, seconds")
    parser.add_argument(
        "--before", default=BASELINE, help="git revision measured after this tree; '' for none"
    )
    args = parser.parse_args()
    return report.run(
        "propagation",
        "Propagation: PutParameter -> served, written, signalled",
        "bench.propagation",
        lambda: measure(args.changes, args.interval, before=args.before or None),
    )


if __name__ == "__main__":
    sys.exit(main())
