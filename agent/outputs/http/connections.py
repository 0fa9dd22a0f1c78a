"""Open connections of a listener: a cap, eviction, a header deadline, and the descriptor limit.

`ConnectionLimiter` is the protocol factory a listener accepts with. It wraps each aiohttp
`RequestHandler` in a `Tracked` protocol that knows what the connection is doing:

    IDLE       waiting for a request (aiohttp's keep-alive timer, http.idle_timeout, closes it)
    RECEIVING  bytes of a request arrived, its headers are not complete (http.header_timeout)
    BODY       the guard is reading the request body (http.body_timeout, in read_body)
    ACTIVE     a request is being answered

and whether it has ever completed a request ("proven"). Beyond `max_connections` open, the
connections that are not ACTIVE and have not moved for YOUNG seconds are closed, those that never
completed a request first, oldest first (nginx likewise reuses idle keep-alive connections when
it runs short): an attacker's idle or half-sent connections give way to clients that send
requests. Past `max_connections` a burst may open up to `ceiling` connections (at most twice
`max_connections`, within the descriptor limit); at the ceiling a new connection evicts at once,
and only when every connection is busy or young is it refused: a 503, then closed. So the process
never runs out of descriptors, and a client that sends its request promptly is served.
"""

from __future__ import annotations

import asyncio
import fcntl
import resource
import sys
import termios
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Counter

import agent.tasks as tasks
from agent.config import HttpConfig
from agent.logs import LogThrottle
from agent.metrics import Metrics
from agent.outputs.http.limits import Limited
from agent.outputs.http.listen import Listener

log = structlog.get_logger(__name__)

IDLE, RECEIVING, BODY, ACTIVE = 0, 1, 2, 3
SWEEP_EVERY = 1.0
# A connection that moved within this long is not evicted: a client that has just connected (its
# request may still wait in the socket buffer) or has just been answered keeps its connection.
YOUNG = 0.25
# A kept-alive connection that carried a request within this long is not evicted (it is the
# last resort before refusing; an idle pool of a real client is reused or closed by then).
KEEPALIVE_GRACE = 2.0
TRIM_DELAY = 0.05  # after a burst, evict down to max_connections once its requests were read
# Descriptors kept for everything that is not an API connection (SSM connection pool, log and
# config files, watchers, the event loop, child processes).
DESCRIPTOR_RESERVE = 128
OPS_MAX_CONNECTIONS = 64  # the ops listener's cap (it serves only probes and scrapes)
# After an answer sent before the body was read (408, 413), how long aiohttp keeps reading and
# dropping the rest so the client sees the answer rather than a reset. Its default is 10 s.
LINGER = 1.0
_OVER_LIMIT_BODY = (
    b'{"__type": "ServiceUnavailable", "message": "too many open connections; retry shortly"}'
)
OVER_LIMIT_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_OVER_LIMIT_BODY)).encode() + b"\r\n\r\n" + _OVER_LIMIT_BODY
)


class Tracked(asyncio.Protocol):
    """One accepted connection: forwards every event to aiohttp's protocol and keeps its phase."""

    __slots__ = (
        "closing",
        "forward",
        "inner",
        "limiter",
        "phase",
        "proven",
        "since",
        "transport",
    )

    def __init__(self, inner: asyncio.Protocol, limiter: ConnectionLimiter) -> None:
        self.inner = inner
        self.forward = inner.data_received  # bound once: called for every packet
        self.limiter = limiter
        self.transport: asyncio.Transport | None = None
        self.phase = IDLE
        self.since = time.monotonic()  # when the connection last moved (phase change)
        self.proven = False  # has completed a request
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.phase == IDLE:
            self.phase = RECEIVING
            self.since = time.monotonic()
        self.forward(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.limiter.lost(self)
        self.inner.connection_lost(exc)


class _OverLimit(asyncio.Protocol):
    """Answers 503 at once and closes: the connection never reaches aiohttp."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(OVER_LIMIT_RESPONSE)
        transport.close()


class ConnectionLimiter:
    """The protocol factory of one listener (see the module docstring).

    `begin(request.protocol)` marks a request ACTIVE and returns its connection, `end(conn)`
    marks it IDLE again (and proven).
    """

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol] | None = None,
        *,
        listener: str,
        max_connections: int,
        ceiling: int,
        header_timeout: float,
        dropped: Counter,
    ) -> None:
        self.factory = factory  # aiohttp's (runner.server), set once the runner is set up
        self.listener = listener
        self.max_connections = max_connections
        self.ceiling = max(ceiling, max_connections)
        self.header_timeout = header_timeout
        self._dropped = dropped
        self.open = 0  # accepted and not yet lost (those being closed included)
        self._closing = 0
        # Keyed by aiohttp's protocol. Never completed a request, in accept order; completed
        # one, in order of their last answer.
        self._fresh: dict[Any, Tracked] = {}
        self._proven: dict[Any, Tracked] = {}
        self._trim: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._log = LogThrottle()

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.ceiling and not self._evict(time.monotonic()):
            self.dropped("over_limit")
            return _OverLimit()
        assert self.factory is not None
        inner = self.factory()
        conn = Tracked(inner, self)
        self._fresh[inner] = conn
        self.open += 1
        if self.open - self._closing > self.max_connections and self._trim is None:
            self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY, self.trim)
        return conn

    def _evict(self, now: float, *, quiet_too: bool = True) -> bool:
        """Closes the best victim, never an ACTIVE connection, in this order:

        1. one that never completed a request and has not moved within YOUNG, oldest first;
        2. (`quiet_too`) a younger such one that has nothing to read: a client's request
           waiting in the socket buffer keeps its connection, one opened to sit idle does not;
        3. a kept-alive connection idle for KEEPALIVE_GRACE, least recently used first.
        """
        old_enough = now - YOUNG
        quiet: Tracked | None = None
        for conn in self._fresh.values():
            if conn.phase == ACTIVE or conn.closing:
                continue
            if conn.since <= old_enough:
                self._abort(conn, "evicted")
                return True
            if (
                quiet_too
                and quiet is None
                and conn.phase == IDLE
                and _nothing_to_read(conn.transport)
            ):
                quiet = conn
        if quiet is not None:
            self._abort(quiet, "evicted")
            return True
        idle_enough = now - KEEPALIVE_GRACE
        for conn in self._proven.values():
            if conn.phase != ACTIVE and not conn.closing and conn.since <= idle_enough:
                self._abort(conn, "evicted_keepalive")
                return True
        return False

    def _abort(self, conn: Tracked, reason: str) -> None:
        conn.closing = True
        self._closing += 1
        self.dropped(reason)
        if conn.transport is not None:
            conn.transport.abort()

    def trim(self) -> None:
        """Evicts down to max_connections; runs again later while young ones keep it above."""
        self._trim = None
        now = time.monotonic()
        while self.open - self._closing > self.max_connections:
            if not self._evict(now, quiet_too=False):
                self._trim = asyncio.get_running_loop().call_later(YOUNG / 2, self.trim)
                return

    def lost(self, conn: Tracked) -> None:
        table = self._proven if conn.proven else self._fresh
        if table.pop(conn.inner, None) is not None:
            self.open -= 1
            if conn.closing:
                self._closing -= 1

    def dropped(self, reason: str) -> None:
        self._dropped.labels(listener=self.listener, reason=reason).inc()
        suppressed = self._log.allow(reason)
        if suppressed is not None:
            log.warning(
                "http_connection_dropped",
                listener=self.listener,
                reason=reason,
                open=self.open,
                max_connections=self.max_connections,
                suppressed=suppressed,
            )

    def begin(self, inner: Any) -> Tracked | None:
        conn = self._proven.get(inner) or self._fresh.get(inner)  # kept-alive ones first
        if conn is not None:
            conn.phase = ACTIVE
        return conn

    def end(self, conn: Tracked, now: float | None = None) -> None:
        """`conn` answered a request; `now` is time.monotonic() when the caller has it."""
        conn.phase = IDLE
        conn.since = time.monotonic() if now is None else now
        inner = conn.inner
        if conn.proven:
            table = self._proven
            if table.pop(inner, None) is not None:
                table[inner] = conn  # now the most recently answered
        elif self._fresh.pop(inner, None) is not None:
            conn.proven = True
            self._proven[inner] = conn

    def tracking(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """`handler` with begin/end around it, for an app without the API's Guard (ops)."""

        async def tracked(request: web.Request) -> web.StreamResponse:
            conn = self.begin(request.protocol)
            try:
                return await handler(request)
            finally:
                if conn is not None:
                    self.end(conn)

        return tracked

    def sweep(self) -> None:
        """Aborts connections whose headers took longer than header_timeout."""
        deadline = time.monotonic() - self.header_timeout
        for table in (self._fresh, self._proven):
            for conn in list(table.values()):
                if conn.phase == RECEIVING and conn.since < deadline and not conn.closing:
                    self._abort(conn, "header_timeout")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep()

    def start(self) -> None:
        self._sweeper = tasks.spawn(self._sweep_forever(), f"{self.listener}-sweep")

    def stop(self) -> None:
        if self._sweeper is not None:
            tasks.release(self._sweeper)
            self._sweeper.cancel()
            self._sweeper = None
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None


async def read_body(request: web.Request, conn: Tracked | None, deadline: float) -> None:
    """The whole body, read before the request takes a concurrency slot, within `deadline` s and
    `client_max_size` (http.max_body_bytes): request.read() then answers from aiohttp's copy.

    413 RequestTooLarge, 408 RequestTimeout (aiohttp then closes the connection), or 499 when the
    client goes away meanwhile.
    """
    limit = request.client_max_size
    length = request.content_length
    if length is not None and length > limit:
        raise Limited(
            413, "RequestTooLarge", f"the body is larger than {limit} bytes (http.max_body_bytes)"
        )
    waits = not request.content.is_eof()  # usually it all came with the headers: no timer
    if waits and conn is not None:
        conn.phase = BODY
        conn.since = time.monotonic()
    try:
        if waits:
            async with asyncio.timeout(deadline):
                await request.read()
        else:
            await request.read()
    except TimeoutError:
        raise Limited(
            408,
            "RequestTimeout",
            f"the body did not arrive within {deadline:g}s (http.body_timeout)",
        ) from None
    except ConnectionError:
        raise Limited(499, "ClientGone", "the client closed the connection") from None
    except web.RequestPayloadError:
        raise Limited(400, "ValidationException", "the body is malformed") from None
    finally:
        if conn is not None and conn.phase == BODY:
            conn.phase = ACTIVE


def raise_open_file_limit() -> tuple[int, int, int]:
    """Raises the soft RLIMIT_NOFILE to the hard limit; (soft before, soft now, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft, soft, hard
        return soft, wanted, hard
    return soft, soft, hard


def _nothing_to_read(transport: asyncio.Transport | None) -> bool:
    """True when the connection's socket buffer holds no byte (FIONREAD), without reading."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    return int.from_bytes(raw, sys.byteorder) == 0


def descriptor_budget(reserved: int = DESCRIPTOR_RESERVE) -> int:
    """How many connections the soft descriptor limit leaves room for, `reserved` kept aside."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(8, soft - reserved)


def limited_connections(
    listener: str, cfg: HttpConfig, metrics: Metrics, wanted: int
) -> ConnectionLimiter:
    """A listener's ConnectionLimiter: `wanted` (http.max_connections) kept open, bursts up to
    twice that; both lowered to what the descriptor limit can hold."""
    budget = descriptor_budget(DESCRIPTOR_RESERVE + 2 * OPS_MAX_CONNECTIONS)
    ceiling = min(2 * wanted, budget)
    kept = min(wanted, ceiling * 3 // 4)
    if kept < wanted:
        log.warning(
            "http_max_connections_lowered",
            listener=listener,
            configured=wanted,
            effective=kept,
            reason="the open-file limit (RLIMIT_NOFILE) cannot hold that many connections",
        )
    limiter = ConnectionLimiter(
        listener=listener,
        max_connections=kept,
        ceiling=ceiling,
        header_timeout=cfg.header_timeout,
        dropped=metrics.http_connections_dropped,
    )
    metrics.http_open_connections.labels(listener=listener).set_function(lambda: limiter.open)
    return limiter


def _protocol_options(cfg: HttpConfig) -> dict[str, Any]:
    # handler_cancellation: a client that hangs up frees its slot at once (a long-poll
    # would otherwise hold it until its wait ends). Shared work (a refresh, an on-demand
    # fetch) is shielded and finishes for the other callers.
    return {
        "access_log": None,
        "handler_cancellation": True,
        "keepalive_timeout": cfg.idle_timeout,
        "lingering_time": LINGER,
    }


async def start_runner(
    app: web.Application, cfg: HttpConfig, shutdown_timeout: float
) -> web.AppRunner:
    """The runner of a listener's app, with the idle timeout (aiohttp's keep-alive timer, which
    also bounds how long a request's headers may take after the previous answer)."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **_protocol_options(cfg))
    await runner.setup()
    return runner


async def start_server_runner(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    request_factory: Callable[..., web.Request],
    cfg: HttpConfig,
    shutdown_timeout: float,
) -> web.ServerRunner:
    """As start_runner, for aiohttp's low-level server: `handler` answers every request."""
    server = web.Server(
        handler,  # type: ignore[arg-type]
        request_factory=request_factory,
        **_protocol_options(cfg),
    )
    runner = web.ServerRunner(server, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    return runner


async def serve(listener: Listener, connections: ConnectionLimiter, runner: web.BaseRunner) -> None:
    """Accept on `listener` through `connections` into `runner`'s server, then start the
    header-deadline sweep. A bind that fails cleans the runner up and raises."""
    connections.factory = runner.server
    try:
        await listener.bind(connections)
    except BaseException:
        await runner.cleanup()
        raise
    connections.start()
