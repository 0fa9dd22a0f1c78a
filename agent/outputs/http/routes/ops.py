"""Operations endpoints, no token: /ping, /healthz, /readyz, /metrics. None shows a value."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.metrics import Metrics
from agent.outputs.http.context import Route, error_response, json_response, not_ready_message
from agent.state import AgentState, Health


def _rfc3339(unix: float | None) -> str | None:
    if unix is None:
        return None
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def health_body(health: Health, parameters: int, now: float) -> dict[str, object]:
    since = None if health.last_success is None else round(now - health.last_success, 3)
    return {
        "ready": health.ready,
        "last_success": _rfc3339(health.last_success),
        "seconds_since_success": since,
        "last_attempt": _rfc3339(health.last_attempt),
        "parameters": parameters,
        "consecutive_failures": health.consecutive_failures,
        "last_error": health.last_error,
        "errors": [{"name": e.subject, "code": e.code} for e in health.parameter_errors],
    }


def routes(state: AgentState, metrics: Metrics) -> list[Route]:
    async def ping(request: web.Request) -> web.StreamResponse:
        return web.Response(text="healthy")

    async def healthz(request: web.Request) -> web.StreamResponse:
        # Always 200: a source outage is reported here, but it must not get the agent restarted
        # (it keeps serving the last good values).
        return json_response(health_body(state.health(), len(state.snapshot), time.time()))

    async def readyz(request: web.Request) -> web.StreamResponse:
        if state.ready:
            return json_response({"ready": True})
        return error_response(503, "NotReady", not_ready_message(state))

    async def metrics_text(request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=generate_latest(metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    ops = {"/ping": ping, "/healthz": healthz, "/readyz": readyz, "/metrics": metrics_text}
    return [
        Route("GET", path, handler, needs_token=False, needs_ready=False, capped=False)
        for path, handler in ops.items()
    ]
