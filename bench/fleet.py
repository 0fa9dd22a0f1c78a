"""Fleet mode at scale: simulated followers (the real `Fleet` code, many per process, each with
its own Valkey connections) plus a few real agent processes, against moto behind the proxy's
40 req/s account limit and faithful KMS. `python -m bench.fleet [--followers N]`.

Measured: SSM calls/s in steady state, a change's reach (p50/p99/all), a restart of every
simulated follower (SSM and KMS calls), KMS calls per change, Valkey memory per follower; then the
figures extrapolated to 10,000 agents next to per-pod polling.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CHILDREN,
    PYTHON,
    REPO,
    agent_env,
    percentile,
    progress,
    table,
    write_agent_config,
)

N_PARAMETERS = 20
WATCH = 2.0
INTERVAL = 30.0
KEY_NAME = "/bench/fleet-key"
SECURE = "/bench/app/s00"
STRING = "/bench/app/p01"
WATCHED = (SECURE, STRING)
SSM_READS = ("GetParameter", "GetParameters", "GetParametersByPath")


def _config(endpoint: str, redis_url: str) -> dict[str, Any]:
    return {
        "source": {
            "type": "ssm",
            "region": "us-east-1",
            "endpoint_url": endpoint,
            "max_attempts": 3,
            "timeout": "10s",
        },
        "parameters": [{"path": "/bench/app"}],
        "refresh": {"interval": f"{INTERVAL:.0f}s", "jitter": 0.1, "max_backoff": "30s"},
        "http": {"enabled": False},
        "fleet": {
            "url": redis_url,
            "name": "bench",
            "key_parameter": KEY_NAME,
            "watch_interval": f"{WATCH:.0f}s",
            "safety_interval": "15m",
        },
    }


# ------------------------------------------------------------------------------ worker


async def _worker(n: int, endpoint: str, redis_url: str) -> None:
    """`n` followers in this process: prints `joined` once all hold the watched parameters, then
    one `seen` line (name, value, time) per follower each time a watched value changes."""
    import logging

    import structlog

    from agent.config import parse_config
    from agent.fleet.fleet import Fleet
    from agent.fleet.kms import KmsDecryptor
    from agent.metrics import Metrics
    from agent.sources.ssm import SsmSource
    from agent.state import AgentState

    _raise_descriptor_limit()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    cfg = parse_config(_config(endpoint, redis_url))
    metrics = Metrics()  # one registry per process: counters add up
    shared_kms: KmsDecryptor | None = None
    fleets: list[Fleet] = []
    held: list[dict[str, str]] = [{} for _ in range(n)]

    def watch(i: int, fleet: Fleet) -> None:
        for name in WATCHED:
            p = fleet.follower.params.get(name)
            if p is None:
                continue
            before = held[i].get(name)
            if before != p.value:
                held[i][name] = p.value
                if before is not None:
                    line = {"seen": name, "value": p.value, "t": time.time()}
                    print(json.dumps(line), flush=True)

    tasks = []
    for i in range(n):
        ssm = SsmSource(cfg.source, cfg.parameters, metrics)
        fleet = Fleet(cfg, ssm, metrics, AgentState())
        # One KMS client per process (an aiobotocore client is megabytes); calls stay per
        # follower.
        shared_kms = shared_kms or fleet.kms
        fleet.kms = fleet.follower._kms = shared_kms
        fleet.on_change = functools.partial(watch, i, fleet)
        fleets.append(fleet)
        tasks.append(asyncio.create_task(fleet.run()))
    while sum(1 for i, f in enumerate(fleets) if f.role == "follower" and len(held[i]) == 2) < n:
        for i, f in enumerate(fleets):
            watch(i, f)
        await asyncio.sleep(0.2)
    ssm_calls, kms_calls = _own_calls(metrics)
    print(json.dumps({"joined": n, "ssm": ssm_calls, "kms": kms_calls}), flush=True)
    await asyncio.Event().wait()


def _own_calls(metrics: Any) -> tuple[int, int]:
    """SSM reads and KMS Decrypt calls this process's followers made (their own counter)."""
    ssm = kms = 0.0
    for family in metrics.source_requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            op = sample.labels.get("operation")
            if op in SSM_READS:
                ssm += sample.value
            elif op == "Decrypt":
                kms += sample.value
    return int(ssm), int(kms)


def _raise_descriptor_limit() -> None:
    """Two Valkey connections per follower: the soft descriptor limit up to the hard one."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------------------------ driver


class Workers:
    """The simulated followers: worker processes of up to `per_process` followers each."""

    def __init__(self, per_process: int, endpoint: str, redis_url: str, work: Path) -> None:
        self.per_process = per_process
        self.endpoint, self.redis_url = endpoint, redis_url
        self.log = (work / "workers.log").open("ab")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.total = 0
        self.joined = 0
        self.own = [0, 0]  # SSM and KMS calls the followers made until they joined
        self.seen: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        self.total += count
        left = count
        while left > 0:
            n = min(self.per_process, left)
            left -= n
            argv = [PYTHON, "-m", "bench.fleet", "--worker", str(n), self.endpoint, self.redis_url]
            proc = CHILDREN.start(
                argv, stdout=subprocess.PIPE, stderr=self.log, env=agent_env(PYTHONPATH=str(REPO))
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                if "joined" in data:
                    self.joined += data["joined"]
                    self.own[0] += data["ssm"]
                    self.own[1] += data["kms"]
                else:
                    self.seen.setdefault((data["seen"], data["value"]), []).append(data["t"])

    def wait_joined(self, timeout: float) -> float:
        started = time.monotonic()
        while self.joined < self.total:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{self.joined}/{self.total} followers joined")
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a worker process exited (see workers.log)")
            time.sleep(0.2)
        return time.monotonic() - started

    def reach(self, name: str, value: str, put_at: float, timeout: float) -> list[float]:
        """Seconds from the PutParameter until each follower held `value` (all, or by timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.seen.get((name, value), ())) >= self.total:
                    break
            time.sleep(0.05)
        with self._lock:
            return sorted(t - put_at for t in self.seen.get((name, value), ()))

    def stop(self) -> None:
        CHILDREN.stop_many(self.procs)
        self.procs, self.total, self.joined, self.own = [], 0, 0, [0, 0]


def _ssm_calls(proxy: Any) -> int:
    return sum(proxy.count(op) for op in SSM_READS)


class Size:
    """What one fleet size measured."""

    def __init__(self, followers: int) -> None:
        self.followers = followers
        self.rows: dict[str, str] = {}


def measure(sizes: list[int], per_process: int, agents: int, steady_s: float) -> str:
    sys.path.insert(0, str(REPO))
    from tests.support.fault_proxy import FaultProxy
    from tests.support.moto import boto3_client, start_moto_server
    from tests.support.redis import RedisServer

    _raise_descriptor_limit()
    largest = max(sizes)
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    moto = start_moto_server()
    redis = RedisServer(maxclients=2 * largest + 1000).start()
    proxy = FaultProxy(moto.url, faithful_kms=True).start()
    measured: list[Size] = []
    try:
        ssm = boto3_client("ssm", moto.url)
        key_id = boto3_client("kms", moto.url).create_key()["KeyMetadata"]["KeyId"]
        ssm.put_parameter(Name=KEY_NAME, Value="bench-fleet-key-" + "x" * 24, Type="SecureString")
        for i in range(N_PARAMETERS):
            secure = i % 2 == 0
            ssm.put_parameter(
                Name=f"/bench/app/{'s' if secure else 'p'}{i:02d}",
                Value=f"value-{i}",
                Type="SecureString" if secure else "String",
                **({"KeyId": key_id} if secure else {}),
            )
        proxy.set_rate_limit(40.0, operations=frozenset(SSM_READS))
        used_before = _info(redis, "memory", "used_memory")
        progress(f"starting {agents} agent processes")
        for i in range(agents):
            path = work / f"agent{i}.toml"
            write_agent_config(path, _config(proxy.url, redis.url))
            CHILDREN.start(
                [PYTHON, "-m", "agent", "run", "-c", str(path)], env=agent_env(PYTHONPATH=str(REPO))
            )
        time.sleep(WATCH * 3)
        workers = Workers(per_process, proxy.url, redis.url, work)
        for size in sorted(sizes):
            m = Size(size)
            measured.append(m)
            adding = size - workers.total
            progress(f"adding {adding} simulated followers ({size} in all)")
            own_before = list(workers.own)
            workers.add(adding)
            took = workers.wait_joined(timeout=60 + 0.3 * adding)
            ssm_calls, kms_calls = (a - b for a, b in zip(workers.own, own_before, strict=True))
            m.rows["join of the added followers (their own calls)"] = (
                f"{adding} in {took:.1f} s: SSM calls {ssm_calls}, KMS Decrypt {kms_calls}"
            )
            used = _info(redis, "memory", "used_memory")
            clients = _info(redis, "clients", "connected_clients")
            m.rows["Valkey memory per follower"] = (
                f"{(used - used_before) / size / 1024:.1f} KiB ({clients} clients)"
            )
            m.rows["_kib"] = f"{(used - used_before) / size / 1024:.1f}"

            progress(f"steady state: {steady_s:.0f} s")
            proxy.reset_calls()
            time.sleep(steady_s)
            throttled = sum(1 for c in proxy.calls() if c.faulted)
            m.rows["SSM calls/s, steady state"] = (
                f"{_ssm_calls(proxy) / steady_s:.2f} (throttled: {throttled})"
            )

            for name, kind in ((STRING, "String"), (SECURE, "SecureString")):
                progress(f"one {kind} change")
                proxy.reset_calls()
                value = f"changed-at-{size}"
                put_at = time.time()
                ssm.put_parameter(
                    Name=name,
                    Value=value,
                    Type=kind,
                    Overwrite=True,
                    **({"KeyId": key_id} if kind == "SecureString" else {}),
                )
                reach = workers.reach(name, value, put_at, timeout=60)
                m.rows[f"{kind} change reach p50 / p99 / all"] = _reach(reach, size)
                if kind == "SecureString":
                    m.rows["KMS Decrypt calls for the changed SecureString"] = str(
                        proxy.count("Decrypt")
                    )
                    m.rows["SSM reads at the proxy until all held it (the watcher's)"] = str(
                        _ssm_calls(proxy)
                    )

        progress(f"restart of all {largest} simulated followers")
        workers.stop()
        proxy.reset_calls()
        workers.add(largest)
        restart_time = workers.wait_joined(timeout=60 + 0.3 * largest)
        restart_ssm, restart_kms = workers.own
        restart_proxy = _ssm_calls(proxy)
        workers.stop()
    finally:
        CHILDREN.stop_all()
        proxy.stop()
        redis.cleanup()
        moto.stop()

    keys = [k for k in measured[0].rows if not k.startswith("_")]
    by_size = table(
        ("measure", *(f"{m.followers} followers" for m in measured)),
        [(k, *(m.rows[k] for m in measured)) for k in keys],
    )
    restart = (
        f"Restart of all {largest} simulated followers at once: all joined again in "
        f"{restart_time:.1f} s with **{restart_ssm} SSM calls** of their own (counted by each "
        f"follower's `source_requests` counter; the proxy saw {restart_proxy} SSM reads in all "
        f"meanwhile: the watcher's cycles) and {restart_kms} KMS Decrypt calls "
        f"({restart_kms / largest:.1f} per follower: the fleet key and the "
        f"{N_PARAMETERS // 2} SecureStrings, decrypted from the state hash)."
    )
    kib = float(measured[-1].rows["_kib"])
    pages = math.ceil(N_PARAMETERS / 10)  # real SSM (moto adds an empty last page)
    safety = 10000 * pages / 900
    extrapolated = [
        (
            "SSM calls/s, steady state",
            f"{pages}/{WATCH:.0f} s = {pages / WATCH:.1f} + 10,000 x {pages}/900 s (safety)"
            f" = {pages / WATCH + safety:.1f}",
            f"10,000 x {pages}/{INTERVAL:.0f} s = {10000 * pages / INTERVAL:.0f}",
        ),
        (
            "KMS/SSM decrypting calls per changed SecureString",
            "10,000 KMS Decrypt (or SSM GetParameters with aws/ssm, spread over 10,000/10 s)",
            "10,000 SSM GetParameters WithDecryption",
        ),
        (
            "restart of every agent: SSM calls",
            "0 where KMS allows (+ 1 each with aws/ssm)",
            f"10,000 x ({pages} + 1) = {10000 * (pages + 1)}",
        ),
        (
            "a changed SecureString: time until every agent serves it",
            f"<= {WATCH:.0f} s (the watcher's next cycle) + 10,000 Decrypt / the account's KMS "
            "quota (5,500 to 30,000 req/s by region: 1.8 to 0.3 s) + Valkey's fan-out of one "
            "entry (each follower on its own CPU in its pod)",
            f"<= {INTERVAL:.0f} s interval + 10,000 decrypting SSM calls at 40 req/s = 250 s "
            "of the whole quota",
        ),
        (
            "Valkey memory",
            f"10,000 x {kib:.1f} KiB = {10000 * kib / 1024:.0f} MiB",
            "-",
        ),
    ]
    return "\n".join(
        [
            f"{N_PARAMETERS} parameters (half SecureStrings under a customer managed key), "
            f"watch_interval {WATCH:.0f} s, safety_interval 15 m; the proxy throttles SSM reads "
            f"above 40 req/s across everyone (KMS is not throttled). {agents} real agent "
            f"processes (one is the watcher) plus simulated followers: the real `Fleet` and "
            f"`Follower` code, {per_process} per process, each with its own two Valkey "
            f"connections (the blocking XREAD and the rest) and its own SSM client; one KMS "
            f"client per process. Followers are added to the same fleet between columns. "
            f"Reach is from the PutParameter until each simulated follower holds the new value "
            f"(the watcher sees it on its next cycle, within {WATCH:.0f} s). Here every "
            f"follower shares 2 cores with moto, the proxy and the agents: a String's reach is "
            f"bound by the receivers (one XADD wakes every follower), a SecureString's by moto's "
            f"KMS answering one Decrypt per follower (one Python process), and the joins and "
            f"the restart by the same KMS throughput ({N_PARAMETERS // 2 + 1} Decrypt calls "
            f"per follower).",
            "",
            by_size,
            "",
            restart,
            "",
            "Extrapolated to 10,000 agents (formula shown; per-pod polling at 30 s beside it):",
            "",
            table(("figure", "fleet mode", "per-pod polling"), extrapolated),
        ]
    )


def _reach(reach: list[float], followers: int) -> str:
    if not reach:
        return "none reached"
    tail = f"{reach[-1]:.2f} s" if len(reach) >= followers else f"only {len(reach)}/{followers}"
    return f"{percentile(reach, 50):.2f} s / {percentile(reach, 99):.2f} s / {tail}"


def _info(redis: Any, section: str, field: str) -> int:
    info = redis.command("INFO", section).decode()
    for line in info.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument(
        "--followers", default="500,2000", help="fleet sizes, comma-separated (grown in turn)"
    )
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state")
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--worker", type=int)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.worker:
        endpoint, redis_url = args.rest
        asyncio.run(_worker(args.worker, endpoint, redis_url))
        return 0
    from bench.report import run

    return run(
        "fleet",
        "Fleet mode at scale",
        "bench.fleet",
        lambda: measure(
            [int(x) for x in args.followers.split(",")], args.per_process, args.agents, args.steady
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
