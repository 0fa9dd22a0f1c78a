"""Guard: what connection tracking adds to each request, in process.

The API's Guard (agent/outputs/http/server.py) with one route whose handler returns a prepared
response, called directly with a minimal request (the token header and the connection's
protocol): once built without a ConnectionLimiter, once with one (what the agent runs: the
request marks its connection ACTIVE, then IDLE and most recently used). Both in rotation, the
best of many rounds each; the difference is the tracking's cost per request. (The tracked
connection's protocol also forwards each `data_received` to aiohttp's: one Python call per
packet, not measured here.)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CollectorRegistry, Counter

from agent.metrics import Metrics
from agent.outputs.http.connections import ConnectionLimiter
from agent.outputs.http.context import TOKEN_HEADER, Route
from agent.outputs.http.server import Guard
from agent.outputs.http.token import TokenCheck
from agent.state import AgentState
from bench import report
from bench.common import table

TOKEN = "t" * 43
ANSWER = web.Response(text="x")


class _Url:
    __slots__ = ("path_safe",)

    def __init__(self, path: str) -> None:
        self.path_safe = path


class _Request:
    __slots__ = ("headers", "method", "protocol", "rel_url")

    def __init__(self, headers: Any, protocol: Any) -> None:
        self.headers = headers
        self.protocol = protocol
        self.method = "GET"
        self.rel_url = _Url("/x")


async def _handler(request: web.Request) -> web.StreamResponse:
    return ANSWER


async def _measure(rounds: int, per_round: int) -> dict[str, float]:
    state = AgentState()
    state.ready = True
    dropped = Counter("d", "d", ["listener", "reason"], registry=CollectorRegistry())
    limiter = ConnectionLimiter(
        asyncio.Protocol,
        listener="bench",
        max_connections=8,
        ceiling=16,
        header_timeout=10.0,
        dropped=dropped,
    )
    tracked = limiter()
    route = Route("GET", "/x", _handler, label="/x")
    untracked = Guard(state, TokenCheck(TOKEN), Metrics(), 256)
    tracked_guard = Guard(state, TokenCheck(TOKEN), Metrics(), 256, connections=limiter)
    untracked.add(route)
    tracked_guard.add(route)
    guards = {
        "without tracking": untracked.handler(),
        "with tracking (the agent)": tracked_guard.handler(),
    }
    headers = CIMultiDictProxy(CIMultiDict({TOKEN_HEADER: TOKEN}))
    request: Any = _Request(headers, getattr(tracked, "inner", None))
    best = dict.fromkeys(guards, float("inf"))
    for _ in range(rounds):
        for name, guarded in guards.items():
            started = time.perf_counter()
            for _ in range(per_round):
                await guarded(request)
            best[name] = min(best[name], (time.perf_counter() - started) / per_round)
    return best


def measure(rounds: int, per_round: int) -> str:
    best = asyncio.run(_measure(rounds, per_round))
    base = best["without tracking"]
    rows = [
        [name, f"{t * 1e6:.2f} us", f"+{(t - base) * 1e6:.2f} us" if t != base else "-"]
        for name, t in best.items()
    ]
    return (
        f"Best of {rounds} rounds of {per_round:,} calls each, in rotation.\n\n"
        + table(["Guard around a handler", "per request", "tracking adds"], rows)
        + "\n\nFor scale: a whole request costs the agent 117-133 us of CPU in the serving "
        "benchmark above."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=20000)
    args = parser.parse_args()
    return report.run(
        "guard-cost",
        "Guard: what connection tracking adds per request",
        "bench.guard_cost",
        lambda: measure(args.rounds, args.per_round),
    )


if __name__ == "__main__":
    raise SystemExit(main())
