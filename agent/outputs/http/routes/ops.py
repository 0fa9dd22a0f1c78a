"""Operations endpoints, no token: /ping, /healthz, /readyz, /metrics. None shows a value."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.metrics import Metrics
from agent.outputs.http.context import Route, error_response, json_response, not_ready_message
from agent.results import ParameterError
from agent.state import AgentState, FilesStatus, FleetStatus, Health


def _rfc3339(unix: float | None) -> str | None:
    if unix is None:
        return None
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def health_body(health: Health, parameters: int, now: float, secrets: int = 0) -> dict[str, object]:
    since = None if health.last_success is None else round(now - health.last_success, 3)
    body: dict[str, object] = {
        "ready": health.ready,
        "last_success": _rfc3339(health.last_success),
        "seconds_since_success": since,
        "last_attempt": _rfc3339(health.last_attempt),
        "parameters": parameters,
        "secrets": secrets,
        "consecutive_failures": health.consecutive_failures,
        "last_error": health.last_error,
        "errors": [_error(e) for e in health.parameter_errors],
        "files": None if health.files is None else files_body(health.files),
    }
    if health.fleet is not None:  # only with [fleet]
        body["fleet"] = fleet_body(health.fleet)
    return body


def fleet_body(fleet: FleetStatus) -> dict[str, object]:
    """Fleet mode: the role (watcher, follower, polling, alone), Valkey reachable, why."""
    return {
        "name": fleet.name,
        "role": fleet.role,
        "connected": fleet.connected,
        "reason": fleet.reason,
        "records_applied": fleet.records_applied,
        "last_record": _rfc3339(fleet.last_record),
    }


def files_body(files: FilesStatus) -> dict[str, object]:
    """The files output's last write: `ok`, `failing` (and why) or `pending` (none yet)."""
    return {
        "dir": files.dir,
        "state": files.state,
        "last_written": _rfc3339(files.last_written),
        "failing_since": _rfc3339(files.failing_since),
        "consecutive_failures": files.failures,
        "error": files.error,
    }


def _error(e: ParameterError) -> dict[str, object]:
    """A failed name (or path, or secret): what and why, never a value."""
    row: dict[str, object] = {"name": e.subject, "code": e.code}
    if e.secret:
        row["secret"] = True
    return row


def routes(state: AgentState, metrics: Metrics) -> list[Route]:
    async def ping(request: web.Request) -> web.StreamResponse:
        return web.Response(text="healthy")

    async def healthz(request: web.Request) -> web.StreamResponse:
        # Always 200: a source outage is reported here, but it must not get the agent restarted
        # (it keeps serving the last good values).
        snapshot = state.snapshot
        body = health_body(state.health(), len(snapshot), time.time(), len(snapshot.secrets))
        return json_response(body)

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
