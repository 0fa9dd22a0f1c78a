"""refusals.py: refused requests are logged at most once a second per kind, fields clipped."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from agent.logs import LogThrottle
from agent.outputs.http.refusals import RefusalLog
from tests.support.conn_server import api
from tests.support.http_api import TOKEN_HEADER


def test_one_line_per_event_and_code_a_second_with_the_count_left_out() -> None:
    now = [0.0]
    refusals = RefusalLog(LogThrottle(clock=lambda: now[0]))
    with capture_logs() as logs:
        for _ in range(10):
            refusals.note("http_request_refused", "AccessDeniedException", path="/x" * 500)
        refusals.note("http_request_refused", "MissingTokenException", path="/y")
        now[0] = 1.0
        refusals.note("http_request_refused", "AccessDeniedException", path="/z")
    assert [(e["code"], e["suppressed"]) for e in logs] == [
        ("AccessDeniedException", 0),
        ("MissingTokenException", 0),
        ("AccessDeniedException", 9),
    ]
    assert len(logs[0]["path"]) < 230 and logs[0]["path"].endswith("chars)")


async def test_a_flood_of_refused_requests_writes_one_line_per_kind(tmp_path: Path) -> None:
    async with api(tmp_path) as (_, listen, _metrics):
        huge = "Mozilla/" + "A" * 6000
        async with aiohttp.ClientSession() as s:
            started = time.monotonic()
            with capture_logs() as logs:
                for _ in range(30):
                    async with s.get(
                        f"http://{listen}/v1/parameters/app/a",
                        headers={TOKEN_HEADER: "wrong", "User-Agent": huge},
                    ) as resp:
                        assert resp.status == 403
                    async with s.post(
                        f"http://{listen}/",
                        headers={"X-Amz-Target": "AmazonSSM." + "B" * 6000},
                    ) as resp:
                        assert resp.status == 403
            elapsed = time.monotonic() - started
    lines = [e for e in logs if e["event"] in ("http_request_refused", "sdk_request_refused")]
    assert 2 <= len(lines) <= 2 * (int(elapsed) + 1), lines  # 60 refusals, 1 line/s per kind
    by_event = {e["event"]: e for e in lines}
    token = by_event["http_request_refused"]
    assert token["code"] == "AccessDeniedException"
    assert token["route"] == "/v1/parameters/{name}" and len(token["user_agent"]) < 230
    sdk = by_event["sdk_request_refused"]
    assert sdk["code"] == "MissingAuthenticationTokenException" and len(sdk["target"]) < 230
