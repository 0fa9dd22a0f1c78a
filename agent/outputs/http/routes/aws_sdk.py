"""`POST /`: the AWS SDKs' SSM protocol on the agent's listener, answered from the snapshot.

With `AWS_ENDPOINT_URL_SSM=http://127.0.0.1:2773` an unchanged app's SSM reads come here.
SDKs cannot send the token header, so this route has its own guard instead (see
docs/adopt-without-code-changes.md for the threat model), checked in this order:

- no `X-Forwarded-For` / `Forwarded` (400 ValidationException; the shared guard refuses both
  on every route before this handler runs, and on TCP a non-loopback Host too);
- the peer is loopback or the unix socket, and on TCP the Host header names a loopback address,
  which a DNS-rebinding web page cannot send (403 AccessDeniedException);
- a SigV4 `Authorization: AWS4-HMAC-SHA256 Credential=AKID/...` header: 403
  MissingAuthenticationTokenException when absent, 403 IncompleteSignatureException when it has
  another shape. The signature is not verified (the agent has no secret key to verify with);
- with `http.sdk_access_key_ids` set, the Credential's access key id is one of them (400
  AccessDeniedException, as IAM answers a denied call);
- `X-Amz-Target: AmazonSSM.<Operation>` and `Content-Type: application/x-amz-json-1.1`;
  `secretsmanager.<Operation>` too when http.aws_protocols has "secretsmanager".

Every answer carries `x-amzn-RequestId` and `Content-Type: application/x-amz-json-1.1`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from agent.outputs.http import secretsmanager_protocol
from agent.outputs.http.context import HttpContext, OnDemand, Route, RouteFactory
from agent.outputs.http.limits import Limited
from agent.outputs.http.origin import loopback_address, loopback_host_header
from agent.outputs.http.refusals import RefusalLog
from agent.outputs.http.ssm_protocol import (
    CONTENT_TYPE,
    SdkError,
    SdkReply,
    answer,
    error_reply,
    names_to_fetch,
    operation_of,
)
from agent.results import SourceError
from agent.snapshot import Parameter

PATH = "/"
REQUEST_ID_HEADER = "x-amzn-RequestId"
_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<akid>[A-Za-z0-9]+)/\d{8}/[a-z0-9-]+/[a-z0-9-]+/"
    r"aws4_request\s*,\s*SignedHeaders=[a-z0-9;-]+\s*,\s*Signature=[0-9a-f]{64}\s*$"
)


def check_origin(request: web.Request) -> None:
    """The peer address and the Host header (DNS-rebinding guard). The shared guard has already
    refused forwarded requests and a non-loopback Host on every route; here a request without
    Host is refused too, since every SDK sends one."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and peer:
        if not loopback_address(str(peer[0])):
            raise SdkError(
                "AccessDeniedException", "the AWS SDK protocol is served to loopback only", 403
            )
        host = request.headers.get("Host", "")
        if not loopback_host_header(host):
            raise SdkError(
                "AccessDeniedException",
                f"the Host header must name a loopback address (127.0.0.1, ::1 or localhost), "
                f"got {host!r}: set the SDK's SSM endpoint to http://127.0.0.1:<port>",
                403,
            )


def access_key_id(authorization: str | None) -> str:
    """The access key id of a SigV4 Authorization header, or SdkError (403)."""
    if not authorization:
        raise SdkError(
            "MissingAuthenticationTokenException",
            "a SigV4 Authorization header is required: call through an AWS SDK or CLI",
            403,
        )
    match = _SIGV4.match(authorization)
    if match is None:
        raise SdkError(
            "IncompleteSignatureException",
            "the Authorization header is not an AWS4-HMAC-SHA256 (SigV4) signature",
            403,
        )
    return match["akid"]


def check_access_key(akid: str, allowed: frozenset[str]) -> None:
    if allowed and akid not in allowed:
        raise SdkError(
            "AccessDeniedException",
            f"access key id {akid} is not in http.sdk_access_key_ids of this agent",
        )


def decode_body(raw: bytes) -> Any:
    if not raw:
        return {}  # SSM takes an empty body as an empty request
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SdkError("SerializationException", "the request body is not valid JSON") from None
    except RecursionError:
        raise SdkError("SerializationException", "the request body is nested too deeply") from None


def render(reply: SdkReply, request_id: str) -> web.Response:
    return web.Response(
        status=reply.status,
        body=json.dumps(reply.body).encode(),
        headers={"Content-Type": CONTENT_TYPE, REQUEST_ID_HEADER: request_id},
    )


class SdkHandler:
    def __init__(
        self,
        ctx: HttpContext,
        allowed_access_keys: Iterable[str],
        *,
        ssm: bool = True,
        secretsmanager: bool = False,
    ) -> None:
        self._ctx = ctx
        self._allowed = frozenset(allowed_access_keys)
        self._ssm = ssm
        self._secretsmanager = secretsmanager
        self._refusals = RefusalLog()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        try:
            reply = await self._answer(request)
        except SdkError as exc:
            reply = error_reply(exc.code, exc.message, exc.status)
        quiet = ("ParameterNotFound", secretsmanager_protocol.NOT_FOUND)
        if reply.status != 200 and reply.body.get("__type") not in quiet:
            # Refusals are worth a line (a probe, a misconfigured app); values never appear.
            # At most one a second per code, fields clipped: see refusals.py.
            self._refusals.note(
                "sdk_request_refused",
                str(reply.body.get("__type")),
                target=request.headers.get("X-Amz-Target", ""),
                status=reply.status,
                request_id=request_id,
            )
        return render(reply, request_id)

    async def _answer(self, request: web.Request) -> SdkReply:
        check_origin(request)
        check_access_key(access_key_id(request.headers.get("Authorization")), self._allowed)
        target = request.headers.get("X-Amz-Target") or ""
        if target.startswith(secretsmanager_protocol.SERVICE_PREFIX):
            return await self._secrets_manager(request, target)
        if not self._ssm:
            raise SdkError(
                "UnknownOperationException",
                f"{target or 'no X-Amz-Target'}: the SSM protocol is off in this agent; add "
                '"ssm" to http.aws_protocols',
            )
        operation = operation_of(target)
        body = await _json_body(request)
        snapshot = self._ctx.state.snapshot  # one consistent view for the whole request
        wanted = names_to_fetch(snapshot, operation, body, self._ctx.on_demand_covers)
        fetched = await self._fetch(wanted)
        return answer(snapshot, operation, body, fetched)

    async def _secrets_manager(self, request: web.Request, target: str) -> SdkReply:
        """`secretsmanager.<Operation>`, when http.aws_protocols has "secretsmanager"."""
        if not self._secretsmanager:
            raise SdkError(
                "UnknownOperationException",
                f"{target}: the Secrets Manager protocol is off in this agent; add "
                '"secretsmanager" to http.aws_protocols',
            )
        operation = secretsmanager_protocol.operation_of(target)
        body = await _json_body(request)
        return secretsmanager_protocol.answer(self._ctx.state.snapshot, operation, body)

    def _fetcher(self, name: str) -> OnDemand | None:
        if self._ctx.on_demand_covers(name):
            return self._ctx.on_demand
        # Another version of a served name (None: such names are not fetched).
        return self._ctx.on_demand_version

    async def _fetch(self, names: list[str]) -> Mapping[str, Parameter | None]:
        planned = [(name, fetch) for name in names if (fetch := self._fetcher(name)) is not None]
        if not planned:
            return {}
        try:
            found = await asyncio.gather(*(fetch(name) for name, fetch in planned))
        except SourceError as exc:
            # A 5xx, as SSM itself fails: SDKs retry it with their own backoff.
            raise SdkError(
                "InternalServerError", f"an on-demand fetch failed: {exc}", 500
            ) from None
        except Limited:
            # SSM's own answer when its quota is exceeded: SDKs back off and retry.
            raise SdkError("ThrottlingException", "Rate exceeded", 400) from None
        return dict(zip((name for name, _ in planned), found, strict=True))


async def _json_body(request: web.Request) -> Any:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type != CONTENT_TYPE:
        raise SdkError(
            "ValidationException",
            f"Content-Type must be {CONTENT_TYPE}, got {content_type or 'none'}",
        )
    return decode_body(await request.read())


def route_factory(
    allowed_access_keys: Iterable[str] = (), protocols: Iterable[str] = ("ssm",)
) -> RouteFactory:
    """The `POST /` route for `build_app(route_factories=...)`, answering the protocols
    named (http.aws_protocols: "ssm", "secretsmanager")."""
    allowed = tuple(allowed_access_keys)
    ssm, secretsmanager = "ssm" in protocols, "secretsmanager" in protocols

    def routes(ctx: HttpContext) -> list[Route]:
        handler = SdkHandler(ctx, allowed, ssm=ssm, secretsmanager=secretsmanager)
        return [Route("POST", PATH, handler.handle, needs_token=False, takes_body=True)]

    return routes
