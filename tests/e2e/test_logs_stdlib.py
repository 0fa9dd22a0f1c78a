"""The real agent's stderr is JSON lines only, even when aiohttp itself has something to say
(a malformed request line, a bad header, TLS on the HTTP port)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.support.builders import write_file_source
from tests.support.child_apps import http_get
from tests.support.moto import free_port
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until

MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGARBAGE \x01\x02 HTTP/9.9\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"A" * 40 + b"\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: 127.0.0.1\r\n\r\nzz\r\n",
]


def _send_raw(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return reply


def test_malformed_requests_are_logged_as_json_lines(tmp_path: Path) -> None:
    port = free_port()
    config = write_file_source(
        tmp_path,
        '"/app/a" = "json-only-value"\n',
        http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
    )
    with AgentProcess("run", "-c", str(config)) as agent:
        agent.wait_for_event("ready")
        for raw in MALFORMED:
            assert _send_raw(port, raw).startswith(b"HTTP/1.")
        assert http_get(f"http://127.0.0.1:{port}/ping") == (200, "healthy")
        wait_until(
            lambda: any(e.get("event") == "http_bad_request" for e in agent.events()),
            10,
            what="http_bad_request logged",
        )
    assert agent.proc.returncode == 0
    not_json = []
    for line in agent.lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            not_json.append(line)
    assert not_json == [], "\n".join(not_json)
    assert "json-only-value" not in agent.log_text()
