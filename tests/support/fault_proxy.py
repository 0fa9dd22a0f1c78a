"""A small fault-injecting reverse proxy for the AWS JSON protocol (SSM, KMS) in front of moto.

moto has no throttling or fault injection. ``FaultProxy`` forwards every request to an upstream
(moto) and, per operation (the ``X-Amz-Target`` header, e.g. ``AmazonSSM.GetParametersByPath``),
can answer with a throttle/error/5xx, delay the request, or drop the connection. It records every
call so tests can assert on API cost.

``faithful_kms=True`` makes moto's SSM answer SecureStrings read without decryption as AWS does:
moto returns the literal ``kms:<KeyId>:<plaintext>``, AWS the base64 KMS ciphertext. The proxy
replaces such a value with a real moto-KMS ciphertext of the plaintext under that key and the
encryption context ``{"PARAMETER_ARN": <the parameter's ARN>}`` (one per parameter version, so a
listing repeated returns the same ciphertext), so tests decrypt what AWS would send.

The proxy runs on its own event loop in a background thread, so synchronous tests,
pytest-asyncio tests and agent subprocesses can all use it.
"""

from __future__ import annotations

import asyncio
import base64
import http
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from tests.support.threaded_server import ThreadedServer

FaultKind = Literal["throttle", "error", "status", "delay", "reset", "reply"]

#: Status recorded for a call whose connection the proxy dropped ("reset" fault).
RESET_STATUS = 0

_JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
_DEFAULT_MESSAGE = "Rate exceeded"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_NOT_FORWARDED_TO_UPSTREAM = _HOP_BY_HOP | {"host", "expect"}


@dataclass(frozen=True)
class Call:
    """One request seen by the proxy.

    ``faulted`` is True when the proxy answered (or dropped the connection) itself instead of
    forwarding; a "delay" fault still forwards, so it is recorded with ``faulted=False``.
    ``status`` is the HTTP status the client got, ``RESET_STATUS`` (0) for a dropped connection.
    ``at`` is ``time.monotonic()`` when the request arrived.
    """

    operation: str
    body: dict[str, Any]
    status: int
    faulted: bool
    at: float


@dataclass
class _Fault:
    operation: str | None
    kind: FaultKind
    code: str
    message: str
    status: int
    delay: float
    match: str | None
    remaining: int | None

    def applies_to(self, operation: str, raw_body: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.operation is not None and self.operation != operation:
            return False
        return self.match is None or self.match in raw_body


@dataclass
class _TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


_RATE_LIMITED = _Fault(
    operation=None,
    kind="throttle",
    code="ThrottlingException",
    message=_DEFAULT_MESSAGE,
    status=400,
    delay=0.0,
    match=None,
    remaining=None,
)


_SSM_READS = frozenset({"GetParameter", "GetParameters", "GetParametersByPath"})


def split_moto_secure_value(value: str) -> tuple[str, str]:
    """moto's `kms:<KeyId>:<plaintext>` -> (KeyId, plaintext); a KeyId may be an ARN."""
    rest = value[len("kms:") :]
    if rest.startswith("arn:"):
        parts = rest.split(":", 6)  # arn:aws:kms:REGION:ACCOUNT:key/ID:plaintext
        return ":".join(parts[:6]), parts[6] if len(parts) > 6 else ""
    key_id, _, plaintext = rest.partition(":")
    return key_id, plaintext


def _parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:us-east-1:123456789012:parameter/{name.lstrip('/')}"


def _operation_of(request: web.Request) -> str:
    target = request.headers.get("X-Amz-Target", "")
    return target.rpartition(".")[2] if target else ""


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        headers={
            "Content-Type": _JSON_CONTENT_TYPE,
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
    )


class FaultProxy(ThreadedServer):
    """Reverse proxy with fault injection, running in its own thread and event loop."""

    thread_name = "fault-proxy"
    client_max_size = 64 * 1024 * 1024

    def __init__(self, upstream_url: str, *, faithful_kms: bool = False) -> None:
        super().__init__()
        self.upstream_url = upstream_url.rstrip("/")
        self.faithful_kms = faithful_kms
        self._ciphertexts: dict[tuple[str, int, str], str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._arrivals = 0
        self._faults: list[_Fault] = []
        self._bucket: _TokenBucket | None = None
        self._limited: frozenset[str] | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"FaultProxy({where} -> {self.upstream_url})"

    # ---------------------------------------------------------------- faults

    def add_fault(
        self,
        operation: str | None,
        kind: FaultKind,
        *,
        code: str = "ThrottlingException",
        message: str = _DEFAULT_MESSAGE,
        status: int = 400,
        delay: float = 0.0,
        match: str | None = None,
        times: int | None = None,
    ) -> None:
        """Inject a fault for ``operation`` (None = any operation).

        ``match``: substring that must occur in the raw request body. ``times``: apply to at most
        that many matching requests (None = until ``clear_faults``). Faults are tried in the order
        they were added; the first that applies wins.

        - "throttle": ``status`` (400) + ``{"__type": code, "message": message}``.
        - "error": same shape with the given ``code``/``status`` (status must be >= 300, or
          botocore would take it as success).
        - "status": a bare 5xx (``status`` must be >= 500) with ``__type`` InternalServerError.
        - "delay": sleep ``delay`` seconds, then forward normally.
        - "reset": drop the connection without any response.
        - "reply": answer ``status`` (200 allowed) with ``message`` as the raw JSON body, e.g. a
          well-formed but malformed-for-SSM answer that the client takes as success.
        """
        if kind not in ("throttle", "error", "status", "delay", "reset", "reply"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind in ("throttle", "error") and status < 300:
            raise ValueError(f"{kind} fault needs status >= 300 (botocore treats {status} as OK)")
        if kind == "status":
            if status < 500:
                raise ValueError(f"'status' fault needs a 5xx status, got {status}")
            if message == _DEFAULT_MESSAGE:
                message = http.HTTPStatus(status).phrase
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0 or None")
        fault = _Fault(operation, kind, code, message, status, delay, match, times)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Remove all faults and the rate limit."""
        with self._lock:
            self._faults.clear()
            self._bucket = None

    def set_rate_limit(
        self,
        per_second: float | None,
        *,
        burst: float | None = None,
        operations: frozenset[str] | None = None,
    ) -> None:
        """Throttle (like "throttle" faults) requests above ``per_second`` across all clients.

        Token bucket starting full with ``burst`` tokens (default ``max(1, per_second)``);
        rejected requests do not consume tokens. None removes the limit. `operations`: only
        these count and are limited (e.g. SSM's reads, not KMS, which has its own quota).
        """
        with self._lock:
            self._limited = operations
            if per_second is None:
                self._bucket = None
                return
            if per_second <= 0:
                raise ValueError("per_second must be > 0 (or None)")
            size = max(1.0, per_second) if burst is None else burst
            if size < 1.0:
                raise ValueError("burst must be >= 1")
            self._bucket = _TokenBucket(rate=per_second, burst=size, tokens=size)

    # ---------------------------------------------------------------- calls

    def calls(self) -> list[Call]:
        """All recorded calls, in arrival order."""
        with self._lock:
            return sorted(self._calls, key=lambda call: call.at)

    def count(
        self,
        operation: str | None = None,
        *,
        with_decryption: bool | None = None,
        include_faulted: bool = True,
    ) -> int:
        """Number of recorded calls matching the filters."""
        with self._lock:
            return self._count_locked(operation, with_decryption, include_faulted)

    def wait_for_count(
        self,
        n: int,
        operation: str | None = None,
        *,
        with_decryption: bool | None = None,
        include_faulted: bool = True,
        timeout: float = 10.0,
    ) -> int:
        """Block until ``count(...) >= n``; returns the count, raises TimeoutError on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                current = self._count_locked(operation, with_decryption, include_faulted)
                if current >= n:
                    return current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"waited {timeout}s for {n} {operation or 'any'} calls, saw {current}"
                    )
                self._changed.wait(remaining)

    def arrivals(self) -> int:
        """Requests received so far, including ones still being answered (e.g. delayed)."""
        with self._lock:
            return self._arrivals

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def _count_locked(
        self, operation: str | None, with_decryption: bool | None, include_faulted: bool
    ) -> int:
        return sum(
            1
            for call in self._calls
            if (operation is None or call.operation == operation)
            and (
                with_decryption is None
                or bool(call.body.get("WithDecryption", False)) == with_decryption
            )
            and (include_faulted or not call.faulted)
        )

    def _record(self, call: Call) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    # ---------------------------------------------------------------- proxying

    def _pick_fault(self, operation: str, raw_body: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.applies_to(operation, raw_body):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
            limited = self._limited is None or operation in self._limited
            if limited and self._bucket is not None and not self._bucket.take():
                return _RATE_LIMITED
            return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        with self._lock:
            self._arrivals += 1
        raw = await request.read()
        operation = _operation_of(request)
        body = _parse_body(raw)
        fault = self._pick_fault(operation, raw.decode("utf-8", errors="replace"))

        if fault is not None and fault.kind == "reset":
            self._record(Call(operation, body, RESET_STATUS, True, arrived))
            if request.transport is not None:
                request.transport.abort()
            # Nothing can be written any more; aiohttp drops this response.
            return web.Response(status=499)

        if fault is not None and fault.kind in ("throttle", "error"):
            self._record(Call(operation, body, fault.status, True, arrived))
            return _error_response(fault.status, fault.code, fault.message)

        if fault is not None and fault.kind == "status":
            self._record(Call(operation, body, fault.status, True, arrived))
            return _error_response(fault.status, "InternalServerError", fault.message)

        if fault is not None and fault.kind == "reply":
            self._record(Call(operation, body, fault.status, True, arrived))
            return web.Response(
                status=fault.status,
                body=fault.message.encode(),
                headers={
                    "Content-Type": _JSON_CONTENT_TYPE,
                    "x-amzn-RequestId": str(uuid.uuid4()),
                },
            )

        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)

        response = await self._forward(request, raw)
        if (
            self.faithful_kms
            and operation in _SSM_READS
            and response.status == 200
            and not body.get("WithDecryption", False)
        ):
            response = await self._encrypt_secure_strings(response)
        self._record(Call(operation, body, response.status, False, arrived))
        return response

    # ---------------------------------------------------------------- faithful KMS

    async def _encrypt_secure_strings(self, response: web.Response) -> web.Response:
        assert isinstance(response.body, bytes)
        payload = json.loads(response.body)
        items = payload.get("Parameters") or []
        if "Parameter" in payload:
            items = [payload["Parameter"]]
        for item in items:
            value = item.get("Value", "")
            if item.get("Type") != "SecureString" or not value.startswith("kms:"):
                continue
            key_id, plaintext = split_moto_secure_value(value)
            arn = item.get("ARN") or _parameter_arn(item["Name"])
            cache_key = (arn, int(item.get("Version", 0)), value)
            if cache_key not in self._ciphertexts:
                self._ciphertexts[cache_key] = await self._kms_encrypt(key_id, plaintext, arn)
            item["Value"] = self._ciphertexts[cache_key]
        return web.Response(
            status=response.status,
            body=json.dumps(payload).encode(),
            headers={k: v for k, v in response.headers.items() if k.lower() != "content-length"},
        )

    async def _kms_encrypt(self, key_id: str, plaintext: str, arn: str) -> str:
        assert self._session is not None
        request = {
            "KeyId": key_id,
            "Plaintext": base64.b64encode(plaintext.encode()).decode(),
            "EncryptionContext": {"PARAMETER_ARN": arn},
        }
        headers = {
            "X-Amz-Target": "TrentService.Encrypt",
            "Content-Type": _JSON_CONTENT_TYPE,
            # moto reads the region from the credential scope; it checks no signature.
            "Authorization": (
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, "
                "SignedHeaders=host, Signature=0"
            ),
        }
        async with self._session.post(
            self.upstream_url + "/", data=json.dumps(request).encode(), headers=headers
        ) as resp:
            answer = json.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"FaultProxy: KMS Encrypt failed: {answer}")
            blob: str = answer["CiphertextBlob"]
            return blob

    async def _forward(self, request: web.Request, raw: bytes) -> web.Response:
        assert self._session is not None
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED_TO_UPSTREAM
        )
        url = URL(self.upstream_url + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=raw, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                out_headers = CIMultiDict(
                    (name, value)
                    for name, value in upstream.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                )
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    body=payload,
                    headers=out_headers,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _error_response(502, "BadGateway", f"FaultProxy upstream error: {exc!r}")
