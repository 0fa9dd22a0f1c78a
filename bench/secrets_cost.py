"""Secrets Manager cost: calls per refresh and per hour, the agent's versions-first cycle against
the strategies of the AWS Secrets Manager Agent, the Lambda extension and the Secrets Store CSI
driver's AWS provider, all counted at one FaultProxy in front of one moto.

(a) the agent: the real `SecretsManagerSource.load(previous)` over one prefix (a warm-up cycle,
    a quiet cycle, a cycle after one rotation);
(b) Secrets Manager Agent: each cached secret whose TTL ran out is checked with DescribeSecret
    and read with GetSecretValue only when its version changed;
(c) Lambda extension: GetSecretValue per secret per TTL;
(d) CSI driver (AWS provider): DescribeSecret per secret per pod per rotation poll,
    GetSecretValue when the version changed.

(b)-(d) are written as small boto3 functions doing what those tools do per secret; their TTL or
poll interval is set to the agent's interval (30 s), so all four serve values equally fresh.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.config import parse_config
from agent.metrics import Metrics
from agent.snapshot import Snapshot
from agent.sources.secrets import SecretsManagerSource
from bench.common import costs_at_sizes, each_in_threads, progress, ssm_source, table
from bench.report import run
from tests.support.fault_proxy import FaultProxy
from tests.support.moto import MotoServer, boto3_client

SIZES = (100, 1000)
INTERVAL = 30.0
CYCLES_PER_HOUR = 3600 / INTERVAL
PRICE_PER_10K = 0.05  # USD per 10,000 Secrets Manager API calls, list price when written
PREFIX = "bench/secrets/"
QUIET, ONE_ROTATED = "no change", "1 rotated"

# A client's cache: secret name -> the VersionId it holds.
Held = dict[str, str]
Strategy = Callable[[Any, Sequence[str], Held], None]


def describe_then_get(sm: Any, names: Sequence[str], held: Held) -> None:
    """(b) and (d): DescribeSecret each; GetSecretValue only for a new AWSCURRENT version."""
    for name in names:
        versions = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        current = next(v for v, stages in versions.items() if "AWSCURRENT" in stages)
        if held.get(name) != current:
            held[name] = sm.get_secret_value(SecretId=name, VersionId=current)["VersionId"]


def get_each(sm: Any, names: Sequence[str], held: Held) -> None:
    """(c): GetSecretValue each, every TTL."""
    for name in names:
        held[name] = sm.get_secret_value(SecretId=name)["VersionId"]


AGENT = "(a) ssm-sidecar: ListSecrets pages, fetch rotated only"
STRATEGIES: tuple[tuple[str, Strategy], ...] = (
    ("(b) Secrets Manager Agent: DescribeSecret per secret per TTL", describe_then_get),
    ("(c) Lambda extension: GetSecretValue per secret per TTL", get_each),
    ("(d) CSI driver: DescribeSecret per secret per pod per poll", describe_then_get),
)


@dataclass(frozen=True)
class Cost:
    strategy: str
    size: int
    cycle: str
    calls: int
    by_operation: dict[str, int]
    values_read: int


def seed(endpoint_url: str, names: Sequence[str], threads: int = 8) -> None:
    def create(client: Any, name: str) -> None:
        client.create_secret(Name=name, SecretString=f"value of {name}")

    each_in_threads("secretsmanager", endpoint_url, create, names, threads)


def values_read(proxy: FaultProxy) -> int:
    """Secret values the calls returned (each one a decryption by Secrets Manager)."""
    total = 0
    for call in proxy.calls():
        if call.operation == "GetSecretValue":
            total += 1
        elif call.operation == "BatchGetSecretValue":
            total += len(call.body.get("SecretIdList", []))
    return total


class Bench:
    def __init__(self, moto: MotoServer, proxy: FaultProxy, loop: asyncio.Runner) -> None:
        self.moto = moto
        self.proxy = proxy
        self.loop = loop

    def size(self, n: int) -> list[Cost]:
        self.moto.reset()
        names = [f"{PREFIX}s{i:05d}" for i in range(n)]
        started = time.monotonic()
        seed(self.moto.url, names)
        progress(f"secrets cost: S={n}: seeded in {time.monotonic() - started:.1f} s")
        direct = boto3_client("secretsmanager", self.moto.url)  # rotations: not counted
        counted = boto3_client("secretsmanager", self.proxy.url)
        cfg = parse_config({"source": ssm_source(self.proxy.url), "secrets": [{"prefix": PREFIX}]})
        source = SecretsManagerSource(cfg.source, cfg.secrets, Metrics())
        helds: dict[str, Held] = {label: {} for label, _ in STRATEGIES}
        try:
            snapshot = self._agent(source, Snapshot(), n, "warm-up")[0]
            for label, strategy in STRATEGIES:
                strategy(counted, names, helds[label])  # their warm-up: every value read once
            costs: list[Cost] = []
            for cycle in (QUIET, ONE_ROTATED):
                if cycle == ONE_ROTATED:
                    direct.put_secret_value(SecretId=names[7], SecretString="rotated")
                snapshot, cost = self._agent(source, snapshot, n, cycle)
                costs.append(cost)
                for label, strategy in STRATEGIES:
                    costs.append(
                        self._strategy(label, strategy, counted, names, helds[label], cycle)
                    )
                if cycle == ONE_ROTATED:
                    direct.put_secret_value(SecretId=names[7], SecretString="rotated again")
        finally:
            self.loop.run(source.close())
        return costs

    def _agent(
        self, source: SecretsManagerSource, previous: Snapshot, n: int, cycle: str
    ) -> tuple[Snapshot, Cost]:
        self.proxy.reset_calls()
        result = self.loop.run(source.load(previous))
        if result.errors or len(result.secrets) != n:
            raise RuntimeError(f"agent cycle: {len(result.secrets)} of {n}, {result.errors}")
        if result.calls != self.proxy.count():
            raise RuntimeError(
                f"agent counted {result.calls} calls, the proxy {self.proxy.count()}"
            )
        snapshot = Snapshot.build({}, previous.generation + 1, result.secrets)
        return snapshot, self._cost(AGENT, n, cycle)

    def _strategy(
        self, label: str, strategy: Strategy, sm: Any, names: Sequence[str], held: Held, cycle: str
    ) -> Cost:
        self.proxy.reset_calls()
        strategy(sm, names, held)
        return self._cost(label, len(names), cycle)

    def _cost(self, label: str, n: int, cycle: str) -> Cost:
        operations: dict[str, int] = {}
        for call in self.proxy.calls():
            operations[call.operation] = operations.get(call.operation, 0) + 1
        cost = Cost(label, n, cycle, self.proxy.count(), operations, values_read(self.proxy))
        progress(f"secrets cost: S={n} {cycle} {label[:3]}: {cost.calls} calls {operations}")
        return cost


def _calls_table(costs: Sequence[Cost]) -> str:
    rows = [
        [
            f"{c.size:,}",
            c.cycle,
            c.strategy,
            c.calls,
            ", ".join(f"{op} {k}" for op, k in sorted(c.by_operation.items())),
            c.values_read,
        ]
        for c in costs
    ]
    return table(["S", "cycle", "strategy", "calls", "by operation", "values read"], rows)


def _per_hour_table(costs: Sequence[Cost]) -> str:
    rows = []
    for c in costs:
        if c.cycle != QUIET:
            continue
        per_hour = c.calls * CYCLES_PER_HOUR
        rows.append(
            [
                f"{c.size:,}",
                c.strategy,
                f"{per_hour:,.0f}",
                f"${per_hour / 10_000 * PRICE_PER_10K:,.4f}",
                f"${per_hour * 24 * 30 / 10_000 * PRICE_PER_10K:,.2f}",
                f"{c.values_read * CYCLES_PER_HOUR:,.0f}",
            ]
        )
    return table(["S", "strategy", "calls/h", "$/h", "$/30 days", "values read/h"], rows)


def _report(costs: Sequence[Cost]) -> str:
    quiet = {c.size: c.calls for c in costs if c.strategy == AGENT and c.cycle == QUIET}
    pages = ", ".join(
        f"S={s:,}: {k} (ceil(S/100) = {math.ceil(s / 100)})" for s, k in quiet.items()
    )
    return (
        "Secrets Manager calls in one refresh, counted at a FaultProxy in front of moto. S "
        f"secrets under one prefix. (a) is the agent's real `SecretsManagerSource.load(previous)` "
        "after a warm-up cycle; (b)-(d) are the other tools' per-secret strategies as boto3 "
        "functions against the same moto, after their own warm-up (every value read once). "
        f"Their TTL / poll interval is set to the agent's {INTERVAL:.0f} s so that all four "
        'serve equally fresh values. "1 rotated": one PutSecretValue just before the refresh.'
        "\n\n" + _calls_table(costs) + f"\n\nThe agent's quiet cycle: {pages}.\n\n"
        f"Per hour at {INTERVAL:.0f} s ({CYCLES_PER_HOUR:.0f} refreshes/h), no change, one host "
        f"or pod (the CSI driver's cost is per pod), API calls at ${PRICE_PER_10K} per 10,000 "
        "(list price when written; KMS requests for customer managed keys are extra and follow "
        '"values read"):\n\n'
        + _per_hour_table(costs)
        + "\n\nWith their default 300 s TTL / 120 s poll, (b)-(d) make 1/10 (1/4 for the CSI "
        "driver) of the calls shown, still far more than (a) at 30 s, with values up to 5 minutes "
        "old; the Secrets Manager Agent and the extension only refresh secrets the app reads "
        "within the TTL.\n"
    )


def measure() -> str:
    return _report(costs_at_sizes(Bench, SIZES))


if __name__ == "__main__":
    sys.exit(run("secrets-cost", "Secrets Manager cost per refresh", "bench.secrets_cost", measure))
