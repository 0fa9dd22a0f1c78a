"""A second, optional listener (`http.ops_listen`) with only /ping, /healthz, /readyz, /metrics.

The API listener is loopback-only, so neither Prometheus nor a kubelet probe can reach it from
outside the pod. These four endpoints hold no value and need no token, so they may listen on
the pod IP (or any address) without weakening the API's guard.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from agent.config import HttpConfig
from agent.metrics import Metrics
from agent.outputs.http.connections import (
    OPS_MAX_CONNECTIONS,
    ConnectionLimiter,
    limited_connections,
    serve,
    start_runner,
)
from agent.outputs.http.context import error_response
from agent.outputs.http.listen import Listener
from agent.outputs.http.routes import ops as ops_routes
from agent.snapshot import Change, Snapshot
from agent.state import AgentState

log = structlog.get_logger(__name__)


async def _not_found(request: web.Request) -> web.StreamResponse:
    return error_response(404, "NotFound", "no such endpoint")


class OpsServer:
    """Capped at OPS_MAX_CONNECTIONS, with the API's timeouts (`cfg` is the [http] section)."""

    def __init__(
        self, listen: str, state: AgentState, metrics: Metrics, cfg: HttpConfig | None = None
    ) -> None:
        self._listener = Listener("http.ops_listen", listen)
        self._state = state
        self._metrics = metrics
        self._cfg = cfg or HttpConfig()
        self._runner: web.AppRunner | None = None
        self._connections: ConnectionLimiter | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self._cfg.max_body_bytes)
        connections = limited_connections("ops", self._cfg, self._metrics, OPS_MAX_CONNECTIONS)
        for route in ops_routes.routes(self._state, self._metrics):
            app.router.add_route(route.method, route.path, connections.tracking(route.handler))
        # Every request passes a tracked handler, so a kept-alive scraper counts as idle.
        app.router.add_route("*", "/{tail:.*}", connections.tracking(_not_found))
        runner = await start_runner(app, self._cfg, 1.0)
        await serve(self._listener, connections, runner)
        self._runner = runner
        self._connections = connections
        log.info("ops_listening", listen=self._listener.listen)

    @property
    def addresses(self) -> list[object]:
        return self._listener.addresses

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        """Nothing to do: every request reads the current state."""

    async def stop(self) -> None:
        self._listener.close()
        if self._connections is not None:
            self._connections.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
