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
CHANGED = "/bench/app/s00"
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
    """`n` followers in this process: prints `joined`, then one `seen` line per follower when
    the changed parameter's value differs from the one it joined with."""
    import logging

    import structlog

    from agent.config import parse_config
    from agent.fleet.fleet import Fleet
    from agent.fleet.kms import KmsDecryptor
    from agent.metrics import Metrics
    from agent.sources.ssm import SsmSource
    from agent.state import AgentState

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    cfg = parse_config(_config(endpoint, redis_url))
    metrics = Metrics()  # one registry per process: counters add up
    shared_kms: KmsDecryptor | None = None
    fleets: list[Fleet] = []
    first: dict[int, str] = {}
    seen: set[int] = set()

    def watch(i: int, fleet: Fleet) -> None:
        p = fleet.follower.params.get(CHANGED)
        if p is None:
            return
        if i not in first:
            first[i] = p.value
        elif p.value != first[i] and i not in seen:
            seen.add(i)
            print(json.dumps({"seen": time.time()}), flush=True)

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
    while sum(1 for i, f in enumerate(fleets) if f.role == "follower" and i in first) < n:
        for i, f in enumerate(fleets):
            watch(i, f)
        await asyncio.sleep(0.2)
    print(json.dumps({"joined": n}), flush=True)
    await asyncio.Event().wait()


# ------------------------------------------------------------------------------ driver


class Workers:
    def __init__(
        self, total: int, per_process: int, endpoint: str, redis_url: str, work: Path
    ) -> None:
        self.log = (work / "workers.log").open("ab")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.joined = 0
        self.seen: list[float] = []
        self._lock = threading.Lock()
        left = total
        while left > 0:
            n = min(per_process, left)
            left -= n
            argv = [PYTHON, "-m", "bench.fleet", "--worker", str(n), endpoint, redis_url]
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
                else:
                    self.seen.append(data["seen"])

    def wait_joined(self, total: int, timeout: float) -> float:
        started = time.monotonic()
        while self.joined < total:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{self.joined}/{total} followers joined")
            time.sleep(0.2)
        return time.monotonic() - started

    def stop(self) -> None:
        CHILDREN.stop_many(self.procs)


def _ssm_calls(proxy: Any) -> int:
    return sum(proxy.count(op) for op in SSM_READS)


def measure(followers: int, per_process: int, agents: int) -> str:
    sys.path.insert(0, str(REPO))
    from tests.support.fault_proxy import FaultProxy
    from tests.support.moto import boto3_client, start_moto_server
    from tests.support.redis import RedisServer

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    moto = start_moto_server()
    redis = RedisServer().start()
    proxy = FaultProxy(moto.url, faithful_kms=True).start()
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
        used_before = _used_memory(redis)
        progress(f"starting {agents} agent processes")
        for i in range(agents):
            path = work / f"agent{i}.toml"
            write_agent_config(path, _config(proxy.url, redis.url))
            CHILDREN.start(
                [PYTHON, "-m", "agent", "run", "-c", str(path)], env=agent_env(PYTHONPATH=str(REPO))
            )
        time.sleep(WATCH * 3)
        progress(f"starting {followers} simulated followers, {per_process} per process")
        started_calls = (_ssm_calls(proxy), proxy.count("Decrypt"))
        workers = Workers(followers, per_process, proxy.url, redis.url, work)
        join_time = workers.wait_joined(followers, timeout=300)
        join_calls = (
            _ssm_calls(proxy) - started_calls[0],
            proxy.count("Decrypt") - started_calls[1],
        )
        used_after = _used_memory(redis)
        clients = _connected_clients(redis)

        progress("steady state: 30 s")
        proxy.reset_calls()
        time.sleep(30)
        steady = _ssm_calls(proxy) / 30
        throttled = sum(1 for c in proxy.calls() if c.faulted)

        progress("one change")
        proxy.reset_calls()
        put_at = time.time()
        ssm.put_parameter(
            Name=CHANGED, Value="changed", Type="SecureString", KeyId=key_id, Overwrite=True
        )
        deadline = time.monotonic() + 60
        while len(workers.seen) < followers and time.monotonic() < deadline:
            time.sleep(0.1)
        reach = sorted(t - put_at for t in workers.seen)
        kms_per_change = proxy.count("Decrypt")

        progress("restart of every simulated follower")
        workers.stop()
        proxy.reset_calls()
        workers = Workers(followers, per_process, proxy.url, redis.url, work)
        restart_time = workers.wait_joined(followers, timeout=300)
        restart_ssm, restart_kms = _ssm_calls(proxy), proxy.count("Decrypt")
        workers.stop()
    finally:
        CHILDREN.stop_all()
        proxy.stop()
        redis.cleanup()
        moto.stop()

    n_total = followers + agents
    per_follower_kib = (used_after - used_before) / followers / 1024
    rows = [
        (
            "agents",
            f"{followers} simulated followers ({per_process} per process)"
            f" + {agents} real agent processes",
        ),
        (
            "join (all followers)",
            f"{join_time:.1f} s, SSM calls {join_calls[0]}, KMS Decrypt {join_calls[1]}",
        ),
        ("SSM calls/s, steady state", f"{steady:.2f} (throttled: {throttled})"),
        ("change reach p50 / p99 / all", _reach(reach, followers)),
        ("KMS Decrypt calls for one changed SecureString", str(kms_per_change)),
        (
            "restart of every follower",
            f"{restart_time:.1f} s, SSM calls {restart_ssm}, KMS Decrypt {restart_kms}",
        ),
        ("Valkey memory per follower", f"{per_follower_kib:.1f} KiB ({clients} clients connected)"),
    ]
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
            "Valkey memory",
            f"10,000 x {per_follower_kib:.1f} KiB = {10000 * per_follower_kib / 1024:.0f} MiB",
            "-",
        ),
    ]
    return "\n".join(
        [
            f"{N_PARAMETERS} parameters (half SecureStrings under a customer managed key), "
            f"watch_interval {WATCH:.0f} s, "
            f"safety_interval 15 m; the proxy throttles above 40 req/s across everyone. "
            f"{n_total} agents in the fleet.",
            "",
            table(("measure", "result"), rows),
            "",
            "Extrapolated to 10,000 agents (formula shown; per-pod polling at 30 s beside it):",
            "",
            table(("figure", "fleet mode", "per-pod polling"), extrapolated),
        ]
    )


def _reach(reach: list[float], followers: int) -> str:
    if not reach:
        return "none reached"
    tail = f"{reach[-1]:.2f} s" if len(reach) == followers else f"only {len(reach)}/{followers}"
    return f"{percentile(reach, 50):.2f} s / {percentile(reach, 99):.2f} s / {tail}"


def _used_memory(redis: Any) -> int:
    info = redis.command("INFO", "memory").decode()
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def _connected_clients(redis: Any) -> int:
    info = redis.command("INFO", "clients").decode()
    for line in info.splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":")[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--followers", type=int, default=2000)
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
        lambda: measure(args.followers, args.per_process, args.agents),
    )


if __name__ == "__main__":
    sys.exit(main())
