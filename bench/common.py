"""What every benchmark shares: child processes that are always cleaned up, agent configs and
environments, moto seeding, machine facts, and small number/table helpers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from tests.support.builders import write_config
from tests.support.fault_proxy import FaultProxy
from tests.support.moto import (
    DUMMY_AWS_ENV,
    MotoServer,
    boto3_client,
    free_port,
    start_moto_server,
)

T = TypeVar("T")
C = TypeVar("C")

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
#: main when issue #15 (lean and fast) was filed: the "before" that `make bench` measures beside
#: this tree for that issue's goals (serving, start-up and memory, CLI start-up, propagation).
BASELINE = "9b94c13"
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line on stderr, stamped with the time since the benchmarks started."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ processes


def export_revision(revision: str, into: Path) -> Path | None:
    """`agent/` as of `revision` in `into` (git archive), or None when git or the revision is
    unavailable; the working tree is not touched."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "agent"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


class Children:
    """Every process a benchmark starts, each in its own process group (session), so that one
    killpg ends it with anything it started; `stop_all` runs on every exit, Ctrl-C included."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.DEVNULL,
        cpu: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`; `cpu` ("0", "1", "0,1") pins it with taskset when taskset exists."""
        command = list(argv)
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", cpu, *command]  # taskset execs: same pid
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=cwd or REPO,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        with self._lock:
            self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM to its group, SIGKILL after `grace`."""
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(5.0)
        _signal_group(proc, signal.SIGKILL)  # anything the child left in its group
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def stop_many(self, procs: Iterable[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
        """Signal all first, then wait: 50 agents stop in one grace period, not fifty."""
        procs = list(procs)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            self.stop(proc, grace=0.0 if proc.poll() is None else grace)

    def stop_all(self) -> None:
        with self._lock:
            procs = list(reversed(self._procs))
        self.stop_many(procs, grace=3.0)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


CHILDREN = Children()


def agent_env(**extra: str) -> dict[str, str]:
    """This environment without real AWS settings, plus moto's dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DUMMY_AWS_ENV)
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def agent_argv(config: Path) -> list[str]:
    return [PYTHON, "-m", "agent", "run", "-c", str(config)]


def write_agent_config(path: Path, config: dict[str, Any]) -> Path:
    """A TOML config (same writer as the e2e tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_config(path, config)


def ssm_source(endpoint_url: str, *, max_attempts: int = 3, timeout: str = "10s") -> dict[str, Any]:
    return {
        "type": "ssm",
        "region": DUMMY_AWS_ENV["AWS_DEFAULT_REGION"],
        "endpoint_url": endpoint_url,
        "max_attempts": max_attempts,
        "timeout": timeout,
    }


# ------------------------------------------------------------------------------ HTTP


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """The status of a GET; 0 when nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            reply.read()
            status: int = reply.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def wait_for_ready(
    base_url: str, proc: subprocess.Popen[bytes], timeout: float, poll: float = 0.01
) -> float:
    """Poll `/readyz` until 200; returns time.monotonic() of the first 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get(base_url + "/readyz", timeout=2.0) == 200:
            return time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode} before it was ready")
        time.sleep(poll)
    raise TimeoutError(f"{base_url} not ready within {timeout:.0f}s")


# ------------------------------------------------------------------------------ moto


@dataclass(frozen=True)
class Seed:
    name: str
    value: str
    secure: bool


def mixed_parameters(prefix: str, count: int, secure_every: int = 2) -> list[Seed]:
    """`count` parameters under `prefix`; every `secure_every`-th one a SecureString."""
    return [
        Seed(f"{prefix}/p{i:05d}", f"value-{i:05d}-{'x' * 24}", i % secure_every == 0)
        for i in range(count)
    ]


@dataclass(frozen=True)
class SeededMoto:
    proc: subprocess.Popen[bytes]
    url: str
    seed_seconds: float  # moto's backend API, in-process, before the server listens


def start_seeded_moto(params: Sequence[Seed], work: Path) -> SeededMoto:
    """A moto server (its own process) already holding `params`; see bench/moto_seeded.py."""
    spec = work / f"moto-spec-{len(params)}.json"
    spec.write_text(json.dumps([[p.name, p.value, p.secure] for p in params]))
    port = free_port()
    env = {**os.environ, **DUMMY_AWS_ENV}
    proc = CHILDREN.start(
        [PYTHON, "-m", "bench.moto_seeded", str(port), str(spec)],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("seeded"):
        CHILDREN.stop(proc)
        raise RuntimeError(f"moto did not start: {line!r}")
    url = f"http://127.0.0.1:{port}"
    client = boto3_client("ssm", url)
    try:
        client.describe_parameters(MaxResults=1)  # pays moto's lazy backend loading now
    finally:
        client.close()
    return SeededMoto(proc, url, float(line.split()[3]))


def seed(endpoint_url: str, params: Sequence[Seed], threads: int = 8) -> float:
    """PutParameter each one (Overwrite) from `threads` boto3 clients; returns the seconds taken."""

    def put(client: Any, p: Seed) -> None:
        client.put_parameter(
            Name=p.name,
            Value=p.value,
            Type="SecureString" if p.secure else "String",
            Overwrite=True,
        )

    return each_in_threads("ssm", endpoint_url, put, params, threads)


def each_in_threads(
    service: str,
    endpoint_url: str,
    call: Callable[[Any, T], object],
    items: Sequence[T],
    threads: int = 8,
) -> float:
    """`call(client, item)` for every item, from `threads` threads with a boto3 client of
    `service` each; returns the seconds taken (the first failure raises)."""
    local = threading.local()

    def one(item: T) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = boto3_client(service, endpoint_url)
        call(client, item)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(one, item) for item in items]:
            future.result()
    return time.monotonic() - started


class SizedBench(Protocol[C]):
    def size(self, n: int) -> list[C]: ...


def costs_at_sizes(
    bench: Callable[[MotoServer, FaultProxy, asyncio.Runner], SizedBench[C]],
    sizes: Iterable[int],
) -> list[C]:
    """`bench(moto, proxy, loop).size(n)` for each size, in order: a moto server, a FaultProxy in
    front of it that counts the calls, an event loop for an agent source run in this process,
    with moto's dummy credentials (never a real account)."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(agent_env())
    moto = start_moto_server()
    try:
        with FaultProxy(moto.url) as proxy, asyncio.Runner() as loop:
            sized = bench(moto, proxy, loop)
            return [cost for n in sizes for cost in sized.size(n)]
    finally:
        moto.stop()


# ------------------------------------------------------------------------------ numbers


def proc_status_kb(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM); None once the process is gone."""
    return kb_field(f"/proc/{pid}/status", field)


def kb_field(path: str, field: str) -> int | None:
    """The number of a `Field:   123 kB` line of a /proc file."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ facts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> list[tuple[str, str]]:
    load = os.getloadavg()
    return [
        ("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu_model()),
        ("memory", _mem_total()),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in load)),
    ]


def _mem_total() -> str:
    kb = kb_field("/proc/meminfo", "MemTotal")
    return "unknown" if kb is None else f"{kb / 1024 / 1024:.1f} GiB"
