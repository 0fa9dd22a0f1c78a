"""The localhost HTTP API as an Output: it serves AgentState.snapshot per request.

A guard wraps every route (in this order): the connecting uid when http.allowed_uids is set
(403, `peers.py`), X-Forwarded-For / Forwarded refused (400), on TCP a Host header that names no
loopback address (403), unknown path (404) or method (405), token (401 missing / 403 wrong),
`Expect` (100 Continue, or 417), the body read (size cap 413, deadline 408), the concurrency cap
(429), readiness (503); it renders every error as `{"__type", "message"}` JSON and counts each
answer by route template. The guard is the listener's one request handler on aiohttp's low-level
server and finds the route itself (dispatch.py). Connections are capped and timed in
connections.py.

Routes come from factories (`RouteFactory`): the built-in ones (ops, Lambda extension, v1) plus
those of `route_factories`, by default the AWS SDK protocol's (`routes/aws_sdk.py`) when
http.aws_protocols lists "ssm" or "secretsmanager". Without a factory that serves `POST /`, it
answers a JSON 400 saying the protocol is off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from hmac import compare_digest
from typing import Any

import structlog
from aiohttp import HttpVersion11, hdrs, web
from multidict import istr

from agent.config import HttpConfig
from agent.metrics import Metrics, RouteSeries
from agent.outputs.http.connections import (
    ConnectionLimiter,
    limited_connections,
    read_body,
    serve,
    start_server_runner,
)
from agent.outputs.http.context import (
    TOKEN_HEADER,
    ApiError,
    Configured,
    Handler,
    HttpContext,
    OnDemand,
    Refresh,
    Route,
    RouteFactory,
    error_response,
    not_ready_message,
)
from agent.outputs.http.dispatch import Router, canonical, request_factory
from agent.outputs.http.limits import Limited, LongPolls, TokenBucket
from agent.outputs.http.listen import Listener, ListenError
from agent.outputs.http.origin import host_refusal, loopback_host_header, proxy_refusal
from agent.outputs.http.peers import PeerGuard
from agent.outputs.http.refusals import RefusalLog
from agent.outputs.http.routes import lambda_extension, ops, secrets_manager, v1
from agent.outputs.http.token import TokenCheck, TokenError, load_or_create_token
from agent.snapshot import Change, Snapshot
from agent.state import AgentState

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE = 2.0
UNMATCHED = "unmatched"
CLIENT_GONE = 499
# Header names as multidict's `istr`: a lookup skips case-folding the name (~25 ns less each).
TOKEN_KEY = istr(TOKEN_HEADER)
_ROUTER_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}


class HttpStartError(ListenError):
    """The API cannot start (token file, address in use); the message says which and why."""


async def _sdk_protocol_missing(request: web.Request) -> web.StreamResponse:
    raise ApiError(
        400,
        "UnknownOperationException",
        "the AWS SDK protocol (POST / with X-Amz-Target) is not enabled in this agent; turn it on "
        'with http.aws_protocols = ["ssm"] (see docs/adopt-without-code-changes.md)',
    )


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """A route as the Guard serves it: its handler, the guards it asks for, its metric series."""

    handler: Handler
    label: str
    series: RouteSeries
    needs_token: bool
    needs_ready: bool
    capped: bool
    takes_body: bool


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise ApiError(404, "NotFound", "no such endpoint")


async def _not_allowed(request: web.Request) -> web.StreamResponse:
    raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed here")


class Guard:
    """Every guard of the module docstring, JSON errors and request metrics, for every route.

    `handler()` is the listener's one request handler (aiohttp's low-level server, no
    Application, see dispatch.py): it finds the route's endpoint, then runs the guards that
    route asks for and its handler. Not an aiohttp middleware: a middleware layer costs ~5 us
    per request in aiohttp, as much as all the guards together. Requests that match no route
    reach a catch-all endpoint guarded the same way, counted as `unmatched`.
    """

    def __init__(
        self,
        state: AgentState,
        token: TokenCheck,
        metrics: Metrics,
        max_concurrency: int,
        *,
        peers: PeerGuard | None = None,
        check_host: bool = True,
        connections: ConnectionLimiter | None = None,
        body_timeout: float = 10.0,
    ) -> None:
        self._state = state
        self._token = token
        self._max = max_concurrency
        self.in_flight = 0
        self._requests = metrics.http
        self._peers = peers
        self._check_host = check_host
        self._connections = connections
        self._body_timeout = body_timeout
        self._refusals = RefusalLog()
        unmatched = Route("*", "", _not_found, needs_token=False, needs_ready=False, capped=False)
        self._router: Router[_Endpoint] = Router(
            self._endpoint(replace(unmatched, label=UNMATCHED)),
            self._endpoint(replace(unmatched, handler=_not_allowed, label=UNMATCHED)),
        )

    def _endpoint(self, route: Route) -> _Endpoint:
        label = route.label or canonical(route.path)
        return _Endpoint(
            route.handler,
            label,
            self._requests.series(label),
            route.needs_token,
            route.needs_ready,
            route.capped,
            route.takes_body,
        )

    def add(self, route: Route) -> None:
        """Serves `route` behind the guards it asks for, counted under its label (by default
        its path template, `{var:regex}` shown as `{var}`)."""
        self._router.add(route.method, route.path, self._endpoint(route))

    def handler(self) -> Handler:
        """The request handler of the listener: every request, matched or not, passes here."""
        find, not_found = self._router.find, self._router.not_found
        peers, check_host, state = self._peers, self._check_host, self._state
        expected = self._token.expected
        body_timeout = self._body_timeout
        begin = self._connections.begin if self._connections is not None else None
        end = self._connections.end if self._connections is not None else None
        # One clock for the request's duration and its connection's last activity: the same
        # clock the connection limiter keeps, so one reading serves both at the end.
        clock = time.monotonic

        async def guarded(request: web.Request) -> web.StreamResponse:
            started = clock()
            conn = begin(request.protocol) if begin is not None else None
            endpoint = not_found  # counted as unmatched should finding it fail
            try:
                endpoint = find(request)
                if peers is not None:
                    await peers.admit(request.transport)
                headers = request.headers
                if hdrs.X_FORWARDED_FOR in headers:
                    raise proxy_refusal("X-Forwarded-For")
                if hdrs.FORWARDED in headers:
                    raise proxy_refusal("Forwarded")
                if check_host:
                    host = headers.get(hdrs.HOST)
                    # No Host at all is an HTTP/1.0 tool, not a browser.
                    if host is not None and not loopback_host_header(host):
                        raise host_refusal(host)
                if endpoint.needs_token:
                    presented = headers.get(TOKEN_KEY)
                    if presented is None:
                        raise ApiError(
                            401, "MissingTokenException", f"the {TOKEN_HEADER} header is required"
                        )
                    # TokenCheck.matches, inlined: one call less on every request.
                    if not compare_digest(expected, presented.encode("utf-8", "surrogateescape")):
                        raise ApiError(
                            403, "AccessDeniedException", f"the {TOKEN_HEADER} header is wrong"
                        )
                if hdrs.EXPECT in headers:
                    await expect_continue(request)
                if not endpoint.capped:
                    response = await endpoint.handler(request)
                else:
                    if endpoint.takes_body:  # before the slot: a slow body never holds one
                        await read_body(request, conn, body_timeout)
                    if self.in_flight >= self._max:
                        raise ApiError(
                            429,
                            "TooManyRequestsException",
                            f"more than {self._max} requests in flight",
                        )
                    self.in_flight += 1
                    try:
                        if endpoint.needs_ready and not state.ready:
                            raise ApiError(503, "NotReady", not_ready_message(state))
                        response = await endpoint.handler(request)
                    finally:
                        self.in_flight -= 1
            except (ApiError, Limited) as exc:
                response = error_response(exc.status, exc.code, exc.message)
                if exc.status in (401, 403):
                    self._refused(request, endpoint.label, exc.code)
            except web.HTTPException as exc:
                response = error_response(
                    exc.status, _ROUTER_CODES.get(exc.status, "HttpError"), exc.reason
                )
            except asyncio.CancelledError:
                # The client hung up (or the server is stopping): nginx's 499, for the metrics.
                endpoint.series.add(CLIENT_GONE, clock() - started)
                raise
            except Exception as exc:
                # The traceback passes the log redactor like every other event.
                log.error(
                    "http_handler_failed",
                    route=endpoint.label,
                    error=type(exc).__name__,
                    exc_info=True,
                )
                response = error_response(
                    500, "InternalFailure", "internal error; see the agent log"
                )
            finally:
                finished = clock()
                if conn is not None:
                    end(conn, finished)  # type: ignore[misc]
            endpoint.series.add(response.status, finished - started)
            return response

        return guarded

    def _refused(self, request: web.Request, label: str, code: str) -> None:
        self._refusals.note(
            "http_request_refused",
            code,
            route=label,
            method=request.method,
            path=request.path,
            user_agent=request.headers.get("User-Agent"),
        )


async def expect_continue(request: web.Request) -> None:
    """What aiohttp's application answers to `Expect`: `100 Continue` to an HTTP/1.1
    `100-continue`, 417 to anything else (sent here only once the guards have let it in)."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise ApiError(417, "ExpectationFailed", f"unknown Expect: {expect[:100]}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own size starts after the interim one


def build_guard(
    ctx: HttpContext,
    metrics: Metrics,
    token: TokenCheck,
    max_concurrency: int,
    route_factories: Sequence[RouteFactory] = (),
    *,
    peers: PeerGuard | None = None,
    check_host: bool = True,
    connections: ConnectionLimiter | None = None,
    body_timeout: float = 10.0,
) -> Guard:
    """The API's Guard serving the built-in routes, then those of `route_factories`.

    `peers` admits only listed uids on every route; `check_host` refuses a Host header that
    names no loopback address (meaningless on a unix socket)."""
    wanted: list[Route] = [
        *ops.routes(ctx.state, metrics),
        *lambda_extension.routes(ctx),
        *v1.routes(ctx),
        *secrets_manager.routes(ctx),
    ]
    for factory in route_factories:
        wanted.extend(factory(ctx))
    if not any((r.method, r.path) == ("POST", "/") for r in wanted):
        wanted.append(Route("POST", "/", _sdk_protocol_missing, needs_token=False))

    guard = Guard(
        ctx.state,
        token,
        metrics,
        max_concurrency,
        peers=peers,
        check_host=check_host,
        connections=connections,
        body_timeout=body_timeout,
    )
    for route in wanted:
        guard.add(route)
    return guard


class HttpServer:
    """The Output: start() binds http.listen, publish() does nothing, stop() closes the listener."""

    def __init__(
        self,
        cfg: HttpConfig,
        state: AgentState,
        metrics: Metrics,
        *,
        refresh: Refresh,
        on_demand: OnDemand,
        interval: float,
        route_factories: Sequence[RouteFactory] | None = None,
        on_demand_version: OnDemand | None = None,
        configured: Configured | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.ctx = HttpContext(
            state,
            refresh,
            on_demand,
            cfg.on_demand_prefixes,
            interval,
            on_demand_version=on_demand_version,
            configured=configured,
            long_polls=LongPolls(cfg.long_poll_limit),
            refresh_limit=TokenBucket(
                "refresh", cfg.refresh_rate, cfg.refresh_burst, metrics.http_rate_limited
            ),
        )
        if route_factories is None:
            route_factories = ()
            if cfg.aws_protocols:  # the SDK protocol's module only when it is on (issue #15)
                from agent.outputs.http.routes import aws_sdk

                route_factories = (
                    aws_sdk.route_factory(cfg.sdk_access_key_ids, cfg.aws_protocols),
                )
        self._route_factories = tuple(route_factories)
        self._runner: web.BaseRunner | None = None
        self._guard: Guard | None = None
        self._listener = Listener("http.listen", cfg.listen)
        self._peers: PeerGuard | None = None
        self._connections: ConnectionLimiter | None = None

    @property
    def in_flight(self) -> int:
        """Requests counted against http.max_concurrency right now."""
        return self._guard.in_flight if self._guard is not None else 0

    @property
    def addresses(self) -> list[Any]:
        return self._listener.addresses

    @property
    def open_connections(self) -> int:
        return self._connections.open if self._connections is not None else 0

    async def start(self) -> None:
        try:
            token = load_or_create_token(self.cfg.token_file)
        except TokenError as exc:
            raise HttpStartError(f"http.token_file: {exc}") from None
        cfg = self.cfg
        connections = limited_connections("api", cfg, self.metrics, cfg.max_connections)
        on_unix = cfg.listen.startswith("unix:")
        if cfg.allowed_uids is not None:
            self._peers = PeerGuard(cfg.allowed_uids)
        guard = build_guard(
            self.ctx,
            self.metrics,
            TokenCheck(token),
            cfg.max_concurrency,
            self._route_factories,
            peers=self._peers,
            check_host=not on_unix,
            connections=connections,
            body_timeout=cfg.body_timeout,
        )
        make_request = request_factory(asyncio.get_running_loop(), cfg.max_body_bytes)
        runner = await start_server_runner(guard.handler(), make_request, cfg, SHUTDOWN_GRACE)
        try:
            await serve(self._listener, connections, runner)
        except ListenError as exc:
            raise HttpStartError(str(exc)) from None
        self._runner = runner
        self._guard = guard
        self._connections = connections
        log.info(
            "http_listening",
            listen=cfg.listen,
            token_file=str(cfg.token_file),
            max_connections=connections.max_connections,
        )

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        """Nothing to do: every request reads the current snapshot."""

    async def stop(self) -> None:
        self.ctx.stopping.set()  # long-polls answer now instead of holding shutdown
        self._listener.close()  # no new connections
        if self._connections is not None:
            self._connections.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._peers is not None:
            self._peers.close()
            self._peers = None
