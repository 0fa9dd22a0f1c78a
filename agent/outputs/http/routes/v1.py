"""The agent's own API: raw values with ETags and long-polls, listings, and refresh-now.

GET  /v1/parameters/{name}          raw value; ETag "<version>"; If-None-Match -> 304;
                                    ?wait=30s with If-None-Match long-polls for a new version
GET  /v1/parameters?path=/p[&recursive=false][&format=json|dotenv]
POST /v1/refresh                    refresh now; what changed (names and versions only)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from agent.durations import parse_duration
from agent.keys import env_names
from agent.outputs.files.bundles import render_dotenv, render_json
from agent.outputs.http.context import (
    JSON_TYPE,
    ApiError,
    HttpContext,
    PerParameter,
    PreparedResponse,
    Route,
    json_response,
    query_flag,
    validation_error,
)
from agent.outputs.http.dispatch import path_value
from agent.outputs.http.lookup import lookup, served_now
from agent.results import CycleResult
from agent.snapshot import Parameter

MAX_WAIT = 300.0  # a long-poll never holds a connection longer than this
TEXT_TYPE = "text/plain"


@lru_cache(maxsize=4096)
def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def etag_of(p: Parameter) -> str:
    return f'"{p.version}"'


def _etag_matches(header: str, mine: str) -> bool:
    """If-None-Match holds this version's tag (weak tags and `*` count too)."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == mine:
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Answers:
    """A parameter's 200 and 304 answers, rendered once per Parameter (see PerParameter)."""

    etag: str
    body: bytes
    value_headers: CIMultiDictProxy[str]
    not_modified_headers: CIMultiDictProxy[str]

    def value(self) -> web.Response:
        return PreparedResponse(self.body, self.value_headers)

    def not_modified(self) -> web.Response:
        return PreparedResponse(None, self.not_modified_headers, 304)


def _answers(p: Parameter) -> _Answers:
    etag = etag_of(p)
    version = str(p.version)
    value_headers = {
        "Content-Type": f"{TEXT_TYPE}; charset=utf-8",
        "ETag": etag,
        "X-Parameter-Version": version,
        "Last-Modified": http_date(p.last_modified),
    }
    not_modified_headers = {"ETag": etag, "X-Parameter-Version": version}
    return _Answers(
        etag,
        p.value.encode(),
        CIMultiDictProxy(CIMultiDict(value_headers)),
        CIMultiDictProxy(CIMultiDict(not_modified_headers)),
    )


def _wait_seconds(raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        return min(parse_duration(raw), MAX_WAIT)
    except ValueError as exc:
        raise validation_error(f"wait: {exc}") from None


def _listing(params: list[Parameter], fmt: str) -> web.Response:
    """What a [[files.bundle]] with this prefix and format would hold: env name -> value."""
    return _listing_pairs({p.key: p.value for p in params}, fmt)


def _listing_pairs(by_key: dict[str, str], fmt: str) -> web.Response:
    """key -> value as one JSON object or dotenv text of env name -> value."""
    if fmt not in ("json", "dotenv"):
        raise validation_error(f"format must be json or dotenv, got {fmt!r}")
    try:
        names = env_names(sorted(by_key))
    except ValueError as exc:
        raise validation_error(f"these parameters cannot share one listing: {exc}") from None
    pairs = {name: by_key[key] for name, key in names.items()}
    if fmt == "json":
        return web.Response(text=render_json(pairs), content_type=JSON_TYPE)
    return web.Response(text=render_dotenv(pairs), content_type=TEXT_TYPE, charset="utf-8")


def _refresh_body(result: CycleResult) -> dict[str, object]:
    return {
        "ok": result.ok,
        "complete": result.complete,
        **result.change.summary(),
        "errors": [{"name": e.subject, "code": e.code} for e in result.errors],
    }


class RefreshCoalescer:
    """Coalesces refresh requests: callers arriving while one runs share its result. Only a
    request that starts a cycle takes a token from ctx.refresh_limit (429 when it is empty)."""

    def __init__(self, ctx: HttpContext) -> None:
        self._ctx = ctx
        self._running: asyncio.Future[CycleResult] | None = None

    async def run(self) -> CycleResult:
        if self._running is None:
            if self._ctx.refresh_limit is not None:
                self._ctx.refresh_limit.take()
            self._running = asyncio.ensure_future(self._ctx.refresh())
            self._running.add_done_callback(self._done)
        return await asyncio.shield(self._running)

    def _done(self, _: asyncio.Future[CycleResult]) -> None:
        self._running = None


async def _swap_or_stop(ctx: HttpContext, seconds: float) -> None:
    """Returns on the next snapshot swap, when the server stops, or after `seconds`."""
    waits = {
        asyncio.ensure_future(ctx.state.wait_for_swap(seconds)),
        asyncio.ensure_future(ctx.stopping.wait()),
    }
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def routes(ctx: HttpContext) -> list[Route]:
    refresh_once = RefreshCoalescer(ctx)
    answers = PerParameter(_answers)

    async def long_poll(name: str, current: Parameter, seconds: float) -> Parameter | None:
        """A parameter that differs from `current`, or None when `seconds` pass without one."""
        deadline = time.monotonic() + seconds
        while not ctx.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # Snapshot names change on a swap; on-demand ones are rechecked once per interval.
            await _swap_or_stop(ctx, min(remaining, ctx.interval))
            p = await lookup(ctx, name, None)
            if (p.version, p.value) != (current.version, current.value):
                return p
        return None

    async def get_value(request: web.Request) -> web.StreamResponse:
        name = "/" + path_value(request, "name")
        # The snapshot's own name first (what find_served tries first for a name with "/").
        p = ctx.state.snapshot.parameters.get(name)
        if p is None:
            p = served_now(ctx, name, None) or await lookup(ctx, name, None)
        served = answers.get(p)
        tags = request.headers.get(hdrs.IF_NONE_MATCH)
        if tags is None or not _etag_matches(tags, served.etag):
            return PreparedResponse(served.body, served.value_headers)
        wait = _wait_seconds(request.query.get("wait"))
        if wait > 0:
            with ctx.long_polls.hold():  # 429 beyond http.max_long_polls
                changed = await long_poll(name, p, wait)
            if changed is not None:
                return answers.get(changed).value()
        return served.not_modified()

    async def list_values(request: web.Request) -> web.StreamResponse:
        query = request.query
        path = query.get("path")
        if not path or not path.startswith("/"):
            raise validation_error("path is required and must start with /")
        recursive = query_flag("recursive", query.get("recursive"), True)
        return _listing(ctx.state.snapshot.under(path, recursive), query.get("format", "json"))

    async def refresh(request: web.Request) -> web.StreamResponse:
        result = await refresh_once.run()
        if not result.ok:
            raise ApiError(502, "SourceUnavailable", f"refresh failed: {result.reason}")
        return json_response(_refresh_body(result))

    return [
        Route("GET", "/v1/parameters/{name:.+}", get_value),
        Route("GET", "/v1/parameters", list_values),
        Route("POST", "/v1/refresh", refresh, needs_ready=False),
    ]
