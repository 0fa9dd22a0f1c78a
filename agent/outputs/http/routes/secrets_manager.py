"""Secrets Manager over the token routes, answered from the snapshot.

    GET /secretsmanager/get?secretId=ID[&versionId=V][&versionStage=S][&refreshNow=true]
        the Lambda extension's and the AWS Secrets Manager Agent's route: the GetSecretValue
        JSON; errors as theirs (400 ResourceNotFoundException, as Secrets Manager answers)
    GET /v1/secrets/{id}[?versionStage=S|versionId=V]
        the raw SecretString (text/plain) or SecretBinary (application/octet-stream);
        ETag "<VersionId>"; If-None-Match -> 304; ?wait=30s long-polls for a new version
    GET /v1/secrets[?prefix=P][&format=json|dotenv]
        every held AWSCURRENT secret whose name starts with P, under its env name

`refreshNow=true` (the Secrets Manager Agent's parameter) runs a refresh cycle first, shared with
any refresh already running, then answers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from agent.outputs.http.context import (
    JSON_TYPE,
    ApiError,
    HttpContext,
    PreparedResponse,
    Route,
    validation_error,
)
from agent.outputs.http.dispatch import path_value
from agent.outputs.http.routes.v1 import (
    TEXT_TYPE,
    RefreshCoalescer,
    _etag_matches,
    _listing_pairs,
    _swap_or_stop,
    _wait_seconds,
    http_date,
)
from agent.outputs.http.secretsmanager_protocol import SECRET_NOT_FOUND, render_value, resolve
from agent.outputs.http.ssm_protocol import SdkError
from agent.snapshot import Secret, Snapshot

COMPAT_PATH = "/secretsmanager/get"
COMPAT_ARGS = frozenset({"secretId", "versionId", "versionStage", "refreshNow"})
NATIVE_ARGS = frozenset({"versionId", "versionStage", "wait"})
_JSON_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": f"{JSON_TYPE}; charset=utf-8"}))
OUTSIDE_SET = " (ssm-sidecar serves only the secrets of its [[secrets]] entries)"


def _flag(name: str, raw: str | None) -> bool:
    """The Secrets Manager Agent's booleans: true/false/1/0, any case."""
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("true", "1", "false", "0"):
        return lowered in ("true", "1")
    raise validation_error(f"{name} must be true or false, got {raw!r}")


def _refuse_unknown(query: web.Request, allowed: frozenset[str]) -> None:
    for name in query.query:
        if name not in allowed:
            raise validation_error(f"unknown parameter: {name}")


def held(snapshot: Snapshot, secret_id: str, version_id: str | None, stage: str | None) -> Secret:
    """The secret version asked for, or the ResourceNotFoundException Secrets Manager sends."""
    try:
        return resolve(snapshot, secret_id, version_id, stage)
    except SdkError as exc:
        hint = OUTSIDE_SET if exc.message == SECRET_NOT_FOUND else ""
        raise ApiError(400, exc.code, exc.message + hint) from None


@dataclass(frozen=True, slots=True)
class _Raw:
    etag: str
    body: bytes
    headers: CIMultiDictProxy[str]
    not_modified_headers: CIMultiDictProxy[str]


def _raw(s: Secret) -> _Raw:
    etag = f'"{s.version_id}"'
    kind = f"{TEXT_TYPE}; charset=utf-8" if s.string is not None else "application/octet-stream"
    common = {"ETag": etag, "X-Secret-Version-Id": s.version_id}
    headers = {**common, "Content-Type": kind, "Last-Modified": http_date(s.created)}
    return _Raw(
        etag, s.data, CIMultiDictProxy(CIMultiDict(headers)), CIMultiDictProxy(CIMultiDict(common))
    )


def routes(ctx: HttpContext) -> list[Route]:
    refresh_once = RefreshCoalescer(ctx)
    rendered: dict[str, tuple[Secret, bytes]] = {}  # ident -> (the Secret it came from, body)

    def body_of(s: Secret) -> bytes:
        entry = rendered.get(s.ident)
        if entry is not None and entry[0] is s:
            return entry[1]
        body = json.dumps(render_value(s)).encode()
        if len(rendered) > 4096:
            rendered.clear()
        rendered[s.ident] = (s, body)
        return body

    async def get_secret(request: web.Request) -> web.StreamResponse:
        _refuse_unknown(request, COMPAT_ARGS)
        query = request.query
        secret_id = query.get("secretId")
        if not secret_id:
            raise validation_error("missing parameter secretId")
        if _flag("refreshNow", query.get("refreshNow")):
            await refresh_once.run()
        s = held(ctx.state.snapshot, secret_id, query.get("versionId"), query.get("versionStage"))
        return PreparedResponse(body_of(s), _JSON_HEADERS)

    async def long_poll(request: web.Request, current: Secret, seconds: float) -> Secret:
        """A version that differs from `current`, or `current` when `seconds` pass first."""
        deadline = time.monotonic() + seconds
        while not ctx.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await _swap_or_stop(ctx, remaining)
            s = _native(request)
            if s.version_id != current.version_id or s.data != current.data:
                return s
        return current

    def _native(request: web.Request) -> Secret:
        query = request.query
        secret_id = path_value(request, "id")
        try:
            return resolve(
                ctx.state.snapshot, secret_id, query.get("versionId"), query.get("versionStage")
            )
        except SdkError as exc:
            hint = OUTSIDE_SET if exc.message == SECRET_NOT_FOUND else ""
            raise ApiError(404, exc.code, f"{secret_id}: {exc.message}{hint}") from None

    async def get_raw(request: web.Request) -> web.StreamResponse:
        _refuse_unknown(request, NATIVE_ARGS)
        s = _native(request)
        answer = _raw(s)
        tags = request.headers.get("If-None-Match")
        if tags is None or not _etag_matches(tags, answer.etag):
            return PreparedResponse(answer.body, answer.headers)
        wait = _wait_seconds(request.query.get("wait"))
        if wait > 0:
            changed = await long_poll(request, s, wait)
            if changed is not s:
                fresh = _raw(changed)
                return PreparedResponse(fresh.body, fresh.headers)
        return PreparedResponse(None, answer.not_modified_headers, 304)

    async def list_secrets(request: web.Request) -> web.StreamResponse:
        _refuse_unknown(request, frozenset({"prefix", "format"}))
        prefix = request.query.get("prefix", "")
        current = [
            s
            for s in ctx.state.snapshot.secrets.values()
            if s.selector is None and s.name.startswith(prefix)
        ]
        return _listing_pairs({s.key: s.text for s in current}, request.query.get("format", "json"))

    return [
        Route("GET", COMPAT_PATH, get_secret),
        Route("GET", "/v1/secrets/{id:.+}", get_raw),
        Route("GET", "/v1/secrets", list_secrets),
    ]
