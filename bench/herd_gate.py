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

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te"}
)


def _forwardable(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _NOT_FORWARDED)


class Gate:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="gate")
        self._open = asyncio.Event()
        self._lock = threading.Lock()
        self._held = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def held(self) -> int:
        """Requests that have arrived while the gate was closed."""
        with self._lock:
            return self._held

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def __enter__(self) -> Gate:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._startup(), self._loop).result(10.0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)

    async def _startup(self) -> int:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
            timeout=aiohttp.ClientTimeout(total=120.0),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port: int = self._runner.addresses[0][1]
        return port

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

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
