"""Redaction: what logging one refused request costs with thousands of values held.

In one process, the agent's own structlog pipeline (agent.logs.configure_structlog, JSON to a
memory stream) logs the `sdk_request_refused` line of a request whose `X-Amz-Target` is 8 KiB of
attacker-chosen text (aiohttp's largest header). Reference in the same run: the redactor and the
logging as they were before (agent/logs.py at BEFORE_REVISION, loaded from git; every refusal
logged, fields not cut). A third row shows one regex alternation of all values, longest first
(the obvious alternative), on the same field.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import string
import subprocess
import time
import types
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

from agent import logs
from agent.logs import LogThrottle, Redactor
from agent.outputs.http.refusals import RefusalLog
from bench import report
from bench.common import REPO, progress, table

BEFORE_REVISION = "44a1d9b"
TARGET = "AmazonSSM." + "".join(random.Random(7).choices(string.ascii_letters, k=8182))
Processor = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]


def _values(count: int) -> list[str]:
    rng = random.Random(count)
    return ["".join(rng.choices(string.ascii_letters + string.digits, k=32)) for _ in range(count)]


def _old_redactor(revision: str, values: list[str]) -> Processor | None:
    try:
        source = subprocess.run(
            ["git", "show", f"{revision}:agent/logs.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("logs_before")
    exec(compile(source, f"{revision}:agent/logs.py", "exec"), module.__dict__)  # noqa: S102
    redactor = module.Redactor()
    redactor.update(values)
    processor: Processor = redactor
    return processor


class _Alternation:
    def __init__(self, values: list[str]) -> None:
        ordered = sorted(values, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered)))

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for k, v in event.items():
            if k != "event" and isinstance(v, str):
                event[k] = self.pattern.sub(logs.REDACTED, v)
        return event


def _configure(redactor: Processor, out: io.StringIO) -> None:
    logs.configure_structlog(out, "info", structlog.processors.JSONRenderer(), scrub=redactor)


def _time_per_call(call: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Seconds per call in the best round (rounds of at least ~50 ms), and the calls made."""
    samples: list[float] = []
    calls = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 3:
        n = 0
        started = time.perf_counter()
        while n == 0 or time.perf_counter() - started < 0.05:
            call()
            n += 1
        samples.append((time.perf_counter() - started) / n)
        calls += n
    return min(samples), calls


def _refused_before(log: Any) -> Callable[[], object]:
    def call() -> object:
        log.info(
            "sdk_request_refused",
            target=TARGET,
            status=400,
            code="UnknownOperationException",
            request_id="0f5c6a8e-2f0b-4c1e-9d3e-1a2b3c4d5e6f",
        )
        return None

    return call


def _refused_now(refusals: RefusalLog) -> Callable[[], object]:
    def call() -> object:
        return refusals.note(
            "sdk_request_refused",
            "UnknownOperationException",
            target=TARGET,
            status=400,
            request_id="0f5c6a8e-2f0b-4c1e-9d3e-1a2b3c4d5e6f",
        )

    return call


def measure(held: list[int], seconds: float, before: str) -> str:
    rows: list[list[str]] = []
    out = io.StringIO()
    log = structlog.get_logger("bench")
    for count in held:
        values = _values(count)
        progress(f"{count} values held")
        old = _old_redactor(before, values) if before else None
        if old is not None:
            _configure(old, out)
            t, _ = _time_per_call(_refused_before(log), seconds)
            label = f"before ({before}): redactor loop, every line, field whole"
            rows.append([f"{count:,}", label, _us(t)])
        if count and count <= 3001:
            _configure(_Alternation(values), out)
            t, _ = _time_per_call(_refused_before(log), seconds)
            rows.append([f"{count:,}", "one regex alternation of all values, field whole", _us(t)])
        new = Redactor()
        new.update(values)
        _configure(new, out)
        t, _ = _time_per_call(_refused_before(log), seconds)
        rows.append([f"{count:,}", "now: value index, every line, field whole (8 KiB)", _us(t)])
        always = RefusalLog(LogThrottle(interval=0.0))
        t, _ = _time_per_call(_refused_now(always), seconds)
        label = "now: value index, field cut to 200 chars, line written"
        rows.append([f"{count:,}", label, _us(t)])
        throttled = RefusalLog()
        t, _ = _time_per_call(_refused_now(throttled), seconds)
        label = "**now, under a flood: one line a second per kind, the rest counted**"
        rows.append([f"{count:,}", label, _us(t)])
        out.seek(0)
        out.truncate()
    structlog.reset_defaults()
    return (
        "One `sdk_request_refused` line whose `target` is 8 KiB of attacker-chosen text (aiohttp's "
        "largest header), through the agent's structlog pipeline (JSON to a memory stream), with N "
        "parameter values held (random, 32 characters). Time per request in the best of the rounds "
        f"of 50 ms run over {seconds:g} s (the least disturbed by other work). The `before` rows "
        f"load agent/logs.py as of {before} from git: the same run, the same machine.\n\n"
        + table(["values held", "redaction and logging", "per refused request"], rows)
        + "\n\nReading: before, a refusal cost grows with every value held (each value is "
        "searched for in each field); one regex alternation is slower still (Python's regex engine "
        "tries every alternative at every position). The value index (`agent/logs.py` "
        "`ValueIndex`) costs what the text's length costs, whatever the number of values; "
        "refusal fields are cut to 200 characters (`logs.clip`) and refusal lines are written at "
        "most once a second per kind (`refusals.RefusalLog`), so under a flood a refused request "
        "costs a dictionary lookup."
    )


def _us(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.1f} ms"
    return f"{seconds * 1e6:,.1f} us"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--held", default="0,3001,10000", help="values held, comma-separated")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row")
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision; '' for none")
    args = parser.parse_args()
    held = [int(x) for x in args.held.split(",")]
    return report.run(
        "redaction",
        "Redaction: logging a refused request with thousands of values held",
        "bench.redaction",
        lambda: measure(held, args.seconds, args.before),
    )


if __name__ == "__main__":
    raise SystemExit(main())
