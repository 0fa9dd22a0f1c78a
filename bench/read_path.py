"""The app's side of one read: a file in files.dir against an HTTP request to the agent.

Both measured from this (the benchmark's) process, pinned to the load generator's CPU, with
Python's own tools (what a Python app would use): `open().read()` of a file on tmpfs, and
`http.client` on one kept-alive connection. The agent's CPU per request comes from /proc.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.processes import cpu_seconds

TMPFS = Path("/dev/shm")


@dataclass(frozen=True)
class ReadCost:
    reads: int
    wall_s: float
    app_cpu_s: float
    agent_cpu_s: float = 0.0

    def per_read_us(self, seconds: float) -> float:
        return seconds / self.reads * 1e6


@contextmanager
def pinned(cpu: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def file_reads(value: bytes, cpu: int, reads: int = 100_000) -> ReadCost:
    """`open(path, "rb").read()` of `value` in a file on tmpfs (the files output's medium in a
    pod: an emptyDir with `medium: Memory`), `reads` times."""
    where = TMPFS if TMPFS.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-read-", dir=where) as tmp, pinned(cpu):
        path = Path(tmp) / "url"
        path.write_bytes(value)
        started, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(reads):
            with open(path, "rb") as f:
                if f.read() != value:
                    raise RuntimeError("the file read back differs")
        return ReadCost(reads, time.perf_counter() - started, time.process_time() - cpu_start)


def http_reads(
    url: str, headers: dict[str, str], agent_pid: int, cpu: int, reads: int = 5_000
) -> ReadCost:
    """GET `url` `reads` times on one kept-alive `http.client` connection."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        with pinned(cpu):
            agent_start = cpu_seconds(agent_pid)
            started, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(reads):
                conn.request("GET", target, headers=headers)
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"GET {target} answered {reply.status}")
            wall, app = time.perf_counter() - started, time.process_time() - cpu_start
            agent = cpu_seconds(agent_pid) - agent_start
    finally:
        conn.close()
    return ReadCost(reads, wall, app, agent)
