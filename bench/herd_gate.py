"""A gate in front of the quota emulator: it holds every request until released, then forwards.

On 2 shared cores, 50 agent processes boot one after another over tens of seconds (imports are
CPU-bound), which spreads their first loads far more than a fleet on 50 nodes would. Holding each
agent's first SSM request until all of them wait, then letting them through at one instant,
puts the first loads where a real fleet has them: together.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from types import TracebackType

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from tests.support.threaded_server import ThreadedServer

_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te"}
)


def _forwardable(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _NOT_FORWARDED)


class Gate(ThreadedServer):
    thread_name = "gate"
    client_timeout = 120.0

    def __init__(self, upstream_url: str) -> None:
        super().__init__()
        self.upstream_url = upstream_url.rstrip("/")
        self._open = asyncio.Event()
        self._lock = threading.Lock()
        self._held = 0

    def held(self) -> int:
        """Requests that have arrived while the gate was closed."""
        with self._lock:
            return self._held

    def release(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._open.set)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        super().__exit__(exc_type, exc, tb)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if not self._open.is_set():
            with self._lock:
                self._held += 1
            await self._open.wait()
        assert self._session is not None
        url = URL(self.upstream_url + request.raw_path, encoded=True)
        async with self._session.request(
            request.method,
            url,
            headers=_forwardable(request.headers),
            data=raw,
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            return web.Response(
                status=upstream.status, body=body, headers=_forwardable(upstream.headers)
            )
