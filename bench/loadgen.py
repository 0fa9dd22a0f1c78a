"""Loopback load: `wrk` when installed (Debian: apt-get install wrk), else an aiohttp client in
its own process (`python -m bench.loadgen URL CONNECTIONS SECONDS HEADER...`, prints JSON).

Both report requests/s, p50/p99 latency and the count of answers that were not 2xx/3xx (a
benchmark with any of those measured the wrong thing and is refused).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.common import CHILDREN, PYTHON, percentile

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class LoadResult:
    requests: int
    rps: float
    p50: float  # seconds
    p99: float
    failed: int  # non-2xx/3xx answers and socket errors
    tool: str


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run(
    url: str, headers: dict[str, str], connections: int, seconds: float, cpu: str | None
) -> LoadResult:
    if tool() == "wrk":
        return _run_wrk(url, headers, connections, seconds, cpu)
    argv = [PYTHON, "-m", "bench.loadgen", url, str(connections), str(seconds)]
    argv += [f"{k}: {v}" for k, v in headers.items()]
    proc = CHILDREN.start(argv, stdout=subprocess.PIPE, cpu=cpu)
    out, _ = proc.communicate(timeout=seconds + 60)
    CHILDREN.stop(proc)
    data = json.loads(out)
    return LoadResult(tool="python (aiohttp client)", **data)


def _run_wrk(
    url: str, headers: dict[str, str], connections: int, seconds: float, cpu: str | None
) -> LoadResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    proc = CHILDREN.start([*argv, url], stdout=subprocess.PIPE, cpu=cpu)
    out, _ = proc.communicate(timeout=seconds + 60)
    CHILDREN.stop(proc)
    return parse_wrk(out.decode())


def parse_wrk(text: str) -> LoadResult:
    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if found is None:
            raise ValueError(f"wrk printed no {pct}% latency:\n{text}")
        return float(found[1]) * _UNITS[found[2]]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if rps is None or total is None:
        raise ValueError(f"unexpected wrk output:\n{text}")
    failed = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        failed += int(non2xx[1])
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if errors:
        failed += sum(int(errors[i]) for i in range(1, 5))
    return LoadResult(int(total[1]), float(rps[1]), latency("50"), latency("99"), failed, "wrk")


# ------------------------------------------------------------------------------ the fallback


async def _load(
    url: str, headers: dict[str, str], connections: int, seconds: float
) -> dict[str, object]:
    import aiohttp

    latencies: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                async with session.get(url, headers=headers) as reply:
                    await reply.read()
                    ok = reply.status < 400
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - started)
            failed += not ok

    connector = aiohttp.TCPConnector(limit=connections)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    elapsed = time.monotonic() - began
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "failed": failed,
    }


def main() -> None:
    url, connections, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    headers = dict(h.split(": ", 1) for h in sys.argv[4:])
    print(json.dumps(asyncio.run(_load(url, headers, connections, seconds))))


if __name__ == "__main__":
    main()
