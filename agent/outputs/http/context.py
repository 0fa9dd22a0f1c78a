"""What every HTTP route module shares: the context handlers read, routes, and JSON errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from aiohttp.compression_utils import MAX_SYNC_CHUNK_SIZE
from aiohttp.web_response import REASON_PHRASES
from multidict import CIMultiDictProxy

from agent.outputs.http.limits import LongPolls, TokenBucket
from agent.outputs.http.ondemand import under_prefixes
from agent.results import CycleResult
from agent.snapshot import Parameter
from agent.state import AgentState

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"  # noqa: S105 (a header name)
JSON_TYPE = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Refresh = Callable[[], Awaitable[CycleResult]]
OnDemand = Callable[[str], Awaitable[Parameter | None]]
#: For a name, where the config asks for it (`path /app`, `name /app/x`), or None.
Configured = Callable[[str], str | None]
#: How much of the last source error a 503 repeats, and how many failing names it lists.
_REASON_CHARS = 300
_REASON_NAMES = 5


class ApiError(Exception):
    """An answer other than success; rendered as `{"__type": code, "message": message}`.

    The message must never hold a parameter value.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"__type": code, "message": message})
    return web.Response(status=status, text=body, content_type=JSON_TYPE)


def not_ready_message(state: AgentState) -> str:
    """Why the agent is not ready: the last source error and the failing names (never a value:
    sources report names, codes and AWS's messages only)."""
    message = "the first complete load has not finished yet"
    if state.last_error is None and not state.parameter_errors:
        return message + " (the first load is still running)"
    parts = []
    if state.last_error is not None:
        reason = state.last_error
        if len(reason) > _REASON_CHARS:
            reason = reason[:_REASON_CHARS] + "..."
        parts.append(f"last error: {reason}")
    failing = [e for e in state.parameter_errors if e.required]
    if failing:
        listed = ", ".join(f"{e.subject} ({e.code})" for e in failing[:_REASON_NAMES])
        more = len(failing) - _REASON_NAMES
        parts.append(f"failing: {listed}" + (f" and {more} more" if more > 0 else ""))
    return f"{message}; {'; '.join(parts)}" if parts else message


class PreparedResponse(web.Response):
    """`web.Response(body=body, headers=headers, status=status)` from parts rendered once.

    The read routes answer from bytes and headers prepared per parameter; aiohttp's
    `Response.__init__` re-checks and converts them on every request (~0.7 us, as much as the
    guards' header checks). This sets the attributes that `__init__` sets, to the same values,
    without the checks: tests/unit/test_http_prepared_response.py compares the two attribute by
    attribute, so an aiohttp release that changes them fails there (aiohttp is pinned).
    """

    def __init__(
        self, body: bytes | None, headers: CIMultiDictProxy[str], status: int = 200
    ) -> None:
        self._state = {}
        self._headers = headers.copy()
        self._status = status
        self._reason = REASON_PHRASES[status]
        self._body = body
        self._compressed_body = None
        self._zlib_executor_size = MAX_SYNC_CHUNK_SIZE
        self._zlib_executor = None


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type=JSON_TYPE)


def validation_error(message: str) -> ApiError:
    return ApiError(400, "ValidationException", message)


def query_flag(name: str, raw: str | None, default: bool) -> bool:
    """A `true`/`false` query parameter (any case); anything else is a ValidationException."""
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise validation_error(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint and the guards the server applies before its handler runs.

    `label` is the metrics label (the path template, never the raw path). `needs_token` routes
    require the token header; `needs_ready` routes answer 503 NotReady before the first complete
    load; `capped` routes count against http.max_concurrency. A `takes_body` route has its body
    read by the guard (size cap, deadline) before it takes a concurrency slot.
    """

    method: str
    path: str
    handler: Handler
    needs_token: bool = True
    needs_ready: bool = True
    capped: bool = True
    label: str = ""
    takes_body: bool = False


@dataclass
class HttpContext:
    """Everything a route handler may read. Handlers never reach into a source."""

    state: AgentState
    refresh: Refresh
    on_demand: OnDemand
    on_demand_prefixes: tuple[str, ...]
    # How often served values may change: the on-demand cache lifetime and the long-poll recheck.
    interval: float
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Fetches `name:selector` (or a pinned name's latest) for a name the agent serves at
    # another version; None: such requests are not found.
    on_demand_version: OnDemand | None = None
    configured: Configured | None = None
    long_polls: LongPolls = field(default_factory=LongPolls)
    refresh_limit: TokenBucket | None = None  # POST /v1/refresh cycles; None: unlimited

    def on_demand_covers(self, name: str) -> bool:
        return under_prefixes(name, self.on_demand_prefixes)


RouteFactory = Callable[[HttpContext], Iterable[Route]]

T = TypeVar("T")


class PerParameter(Generic[T]):
    """What a route renders for a parameter (body bytes, headers), built once per Parameter.

    Parameters are immutable and a refresh replaces the object of every parameter it loads, so
    an entry is reused only while it was built from the very object being served (`is`): a new
    version can never be answered from an old rendering. Keyed by name, so the cache holds one
    entry per name asked for; it is emptied when it exceeds `limit` names.
    """

    def __init__(self, build: Callable[[Parameter], T], limit: int = 16384) -> None:
        self._build = build
        self._limit = limit
        self._entries: dict[str, tuple[Parameter, T]] = {}

    def get(self, p: Parameter) -> T:
        entry = self._entries.get(p.name)
        if entry is not None and entry[0] is p:
            return entry[1]
        built = self._build(p)
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[p.name] = (p, built)
        return built
