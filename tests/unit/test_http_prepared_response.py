"""PreparedResponse (agent/outputs/http/context.py) is web.Response without the per-request
checks: the same attributes with the same values, and the same bytes on the wire."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from agent.outputs.http.context import PreparedResponse

HEADERS = CIMultiDictProxy(
    CIMultiDict(
        {
            "Content-Type": "text/plain; charset=utf-8",
            "ETag": '"3"',
            "X-Parameter-Version": "3",
            "Last-Modified": "Wed, 02 Dec 2026 18:02:17 GMT",
        }
    )
)


@pytest.mark.parametrize(("body", "status"), [(b"postgres://db/app", 200), (None, 304)])
def test_it_holds_what_web_response_holds(body: bytes | None, status: int) -> None:
    fast = PreparedResponse(body, HEADERS, status)
    slow = web.Response(body=body, headers=HEADERS, status=status)
    assert vars(fast) == vars(slow)
    assert (fast.status, fast.reason, fast.body, fast.content_length) == (
        slow.status,
        slow.reason,
        slow.body,
        slow.content_length,
    )


def test_each_response_has_its_own_headers() -> None:
    first = PreparedResponse(b"x", HEADERS)
    first.headers["Date"] = "then"  # aiohttp adds Date, Server, Content-Length when it prepares
    assert "Date" not in PreparedResponse(b"x", HEADERS).headers
    assert "Date" not in HEADERS


async def _raw_answer(response: web.StreamResponse) -> bytes:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return response

    runner = web.ServerRunner(web.Server(handler))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"Date:"))
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("body", "status"), [(b"postgres://db/app", 200), (None, 304)])
async def test_the_same_bytes_go_out(body: bytes | None, status: int) -> None:
    fast = await _raw_answer(PreparedResponse(body, HEADERS, status))
    slow = await _raw_answer(web.Response(body=body, headers=HEADERS, status=status))
    assert fast == slow
    assert fast.startswith(f"HTTP/1.1 {status} ".encode())
