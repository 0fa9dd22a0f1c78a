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

from agent.outputs.http_common import (
    JSON_TYPE,
    HttpContext,
    Route,
    split_selector,
    validation_error,
)
from agent.outputs.http_lookup import lookup
from agent.snapshot import Parameter

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
        if not version.isdigit() or int(version) < 1:
            raise validation_error(f"version must be a positive integer, got {version!r}")
        selector = f":{int(version)}"
    elif label is not None:
        if not label or ":" in label or "/" in label:
            raise validation_error(f"label {label!r} is not a valid label")
        selector = f":{label}"
    if selector == ":":
        raise validation_error(f"{name}: an empty selector after ':'")
    if not base:
        raise validation_error("name must not be empty")
    return base, selector


def _with_decryption(raw: str | None) -> bool:
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise validation_error(f"withDecryption must be true or false, got {raw!r}")


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


def routes(ctx: HttpContext) -> list[Route]:
    async def get_parameter(request: web.Request) -> web.StreamResponse:
        query = request.query
        name = query.get("name")
        if not name:
            raise validation_error("the name query argument is required")
        base, selector = _selector_of(name, query.get("version"), query.get("label"))
        decrypt = _with_decryption(query.get("withDecryption"))
        p = await lookup(ctx, base, selector)
        return web.Response(text=render(p, selector, decrypt), content_type=JSON_TYPE)

    return [Route("GET", PATH, get_parameter)]
