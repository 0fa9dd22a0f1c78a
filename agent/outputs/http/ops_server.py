"""A second, optional listener (`http.ops_listen`) with only /ping, /healthz, /readyz, /metrics.

The API listener is loopback-only, so neither Prometheus nor a kubelet probe can reach it from
outside the pod. These four endpoints hold no value and need no token, so they may listen on
the pod IP (or any address) without weakening the API's guard.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from agent.metrics import Metrics
from agent.outputs.http.listen import Listener
from agent.outputs.http.routes import ops as ops_routes
from agent.snapshot import Change, Snapshot
from agent.state import AgentState

log = structlog.get_logger(__name__)


class OpsServer:
    def __init__(self, listen: str, state: AgentState, metrics: Metrics) -> None:
        self._listener = Listener("http.ops_listen", listen)
        self._state = state
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        for route in ops_routes.routes(self._state, self._metrics):
            app.router.add_route(route.method, route.path, route.handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await self._listener.bind(runner)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("ops_listening", listen=self._listener.listen)

    @property
    def addresses(self) -> list[object]:
        return list(self._runner.addresses) if self._runner is not None else []

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        """Nothing to do: every request reads the current state."""

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._listener.close()
