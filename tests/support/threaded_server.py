"""An aiohttp server on 127.0.0.1 (a free port) with its own event loop in a daemon thread.

Synchronous tests, pytest-asyncio tests and subprocesses can all talk to it. A subclass answers
every request in `_handle`; `_session` is a client session for calls it forwards upstream (no
decompression, no headers of its own). The fault proxy and the herd bench's gate are such servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web


class ThreadedServer:
    thread_name = "threaded-server"
    client_timeout = 60.0  # seconds, a whole call through `_session`
    client_max_size = 1024**2  # aiohttp's default request body cap

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port; returns once the server is listening."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=self.thread_name, daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._port = asyncio.run_coroutine_threadsafe(self._startup(), loop).result(10.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop listening, close connections and the loop thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            future: Future[None] = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(15.0)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10.0)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()
        # Let callbacks scheduled during shutdown (transport closes) run.
        loop.run_until_complete(asyncio.sleep(0))

    async def _startup(self) -> int:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
            timeout=aiohttp.ClientTimeout(total=self.client_timeout),
        )
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        if not addresses:
            raise RuntimeError(f"{type(self).__name__} did not bind a socket")
        port: int = addresses[0][1]
        return port

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError
