"""The AWS Parameters and Secrets Lambda Extension's route, answered from the snapshot.

    GET /systemsmanager/parameters/get?name=NAME[:3|:label][&version=N|&label=L]
        [&withDecryption=true|false]

answers with SSM's GetParameter response shape. A SecureString asked for without
withDecryption=true gets its encrypted value, as SSM (and the extension) answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from agent.outputs.http.context import (
    JSON_TYPE,
    HttpContext,
    PerParameter,
    PreparedResponse,
    Route,
    query_flag,
    validation_error,
)
from agent.outputs.http.lookup import lookup, served_now
from agent.snapshot import Parameter, selector_problem, split_selector, version_number

PATH = "/systemsmanager/parameters/get"


@lru_cache(maxsize=4096)
def rfc3339_ms(moment: datetime) -> str:
    """`2024-05-01T12:30:45.123Z`: UTC, milliseconds, as the extension renders LastModifiedDate."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _selector_of(name: str, version: str | None, label: str | None) -> tuple[str, str | None]:
    base, selector = split_selector(name)
    if version is not None and label is not None:
        raise validation_error("version and label cannot both be given; ask for one")
    if selector is not None and (version is not None or label is not None):
        raise validation_error(
            f"{name} already carries the selector {selector}; drop the version or label argument"
        )
    if version is not None:
        number = version_number(version)
        if number is None or number < 1:
            raise validation_error(f"version must be a positive integer, got {version!r}")
        selector = f":{number}"
    elif label is not None:
        if not label or ":" in label or "/" in label:
            raise validation_error(f"label {label!r} is not a valid label")
        selector = f":{label}"
    problem = None if selector is None else selector_problem(selector)
    if problem is not None:
        raise validation_error(f"{name}: {problem}")
    if not base:
        raise validation_error("name must not be empty")
    return base, selector


def render(p: Parameter, selector: str | None, with_decryption: bool) -> str:
    """The GetParameter response body for `p`, with the selector the request asked for."""
    return json.dumps(
        {
            "Parameter": {
                "ARN": p.arn,
                "DataType": p.data_type,
                "LastModifiedDate": rfc3339_ms(p.last_modified),
                "Name": p.name,
                "Selector": selector,
                "SourceResult": None,
                "Type": p.type,
                "Value": p.value_for(with_decryption),
                "Version": p.version,
            },
            "ResultMetadata": {},
        }
    )


_JSON_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": f"{JSON_TYPE}; charset=utf-8"}))
#: Renderings kept per parameter: one per (selector, withDecryption) asked for, a handful at most.
_RENDERINGS_KEPT = 8


class _Renderings:
    """The response bodies of one Parameter, by (selector, withDecryption), rendered once."""

    __slots__ = ("_bodies", "_p")

    def __init__(self, p: Parameter) -> None:
        self._p = p
        self._bodies: dict[tuple[str | None, bool], bytes] = {}

    def body(self, selector: str | None, with_decryption: bool) -> bytes:
        key = (selector, with_decryption)
        body = self._bodies.get(key)
        if body is None:
            body = render(self._p, selector, with_decryption).encode()
            if len(self._bodies) < _RENDERINGS_KEPT:
                self._bodies[key] = body
        return body


def _arguments(query: MultiMapping[str]) -> tuple[str, str | None, bool]:
    """(name, selector, withDecryption) of a request's query, or a ValidationException."""
    name = query.get("name")
    if not name:
        raise validation_error("the name query argument is required")
    base, selector = _selector_of(name, query.get("version"), query.get("label"))
    return base, selector, query_flag("withDecryption", query.get("withDecryption"), False)


#: Query strings whose arguments are kept parsed: an app asks for the same few over and over.
QUERIES_KEPT = 256


def routes(ctx: HttpContext) -> list[Route]:
    renderings = PerParameter(_Renderings)
    parsed: dict[str, tuple[str, str | None, bool]] = {}

    async def get_parameter(request: web.Request) -> web.StreamResponse:
        # The arguments depend on the query string alone: parse each distinct one once (a
        # refused one is never kept, so it is refused again every time).
        raw = request.rel_url.raw_query_string
        arguments = parsed.get(raw)
        if arguments is None:
            arguments = _arguments(request.query)
            if len(parsed) >= QUERIES_KEPT:
                parsed.clear()
            parsed[raw] = arguments
        base, selector, decrypt = arguments
        p = served_now(ctx, base, selector) or await lookup(ctx, base, selector)
        body = renderings.get(p).body(selector, decrypt)
        return PreparedResponse(body, _JSON_HEADERS)

    return [Route("GET", PATH, get_parameter)]
