"""A connection-exhaustion attacker for tests and benchmarks, in a background thread.

`ConnectionAttack` holds `idle` connections that never send a byte and `slow_body`
connections that send the headers of `POST /` (an SDK-shaped request announcing a body) plus
`{` and then nothing. Whatever the server closes is reopened once per `top_up_every` seconds,
so the pressure lasts for as long as the attack runs. Every socket is closed on `stop()`.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

SLOW_BODY_REQUEST = (
    b"POST / HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Content-Type: application/x-amz-json-1.1\r\n"
    b"X-Amz-Target: AmazonSSM.GetParameter\r\n"
    b"Authorization: AWS4-HMAC-SHA256 Credential=AKIAATTACKER/20260101/us-east-1/ssm/"
    b"aws4_request, SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64 + b"\r\n"
    b"Content-Length: 4096\r\n"
    b"\r\n"
    b"{"
)


@dataclass
class AttackCounts:
    opened: int = 0
    closed_by_server: int = 0
    connect_failed: int = 0
    peak_open: int = 0


@dataclass
class _Conn:
    sock: socket.socket
    kind: str  # "idle" | "slow_body"
    sent: bool = False


@dataclass
class ConnectionAttack:
    host: str
    port: int
    idle: int = 1000
    slow_body: int = 300
    top_up_every: float = 1.0
    counts: AttackCounts = field(default_factory=AttackCounts)

    def __post_init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conn-attack", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> ConnectionAttack:
        self._top_up()
        self._thread.start()
        return self

    def open_now(self) -> dict[str, int]:
        with self._lock:
            out = {"idle": 0, "slow_body": 0}
            for c in self._conns.values():
                out[c.kind] += 1
            return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        with self._lock:
            for c in self._conns.values():
                with contextlib.suppress(Exception):
                    self._selector.unregister(c.sock)
                c.sock.close()
            self._conns.clear()
        self._selector.close()

    def __enter__(self) -> ConnectionAttack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread

    def _open(self, kind: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex((self.host, self.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.counts.connect_failed += 1
            return
        conn = _Conn(sock, kind)
        self._conns[sock.fileno()] = conn
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if kind == "slow_body" else 0)
        self._selector.register(sock, events, conn)
        self.counts.opened += 1

    def _top_up(self) -> None:
        with self._lock:
            have = {"idle": 0, "slow_body": 0}
            for c in self._conns.values():
                have[c.kind] += 1
            # Slow bodies first: they are the ones that reach a handler.
            for _ in range(self.slow_body - have["slow_body"]):
                self._open("slow_body")
            for _ in range(self.idle - have["idle"]):
                self._open("idle")
            self.counts.peak_open = max(self.counts.peak_open, len(self._conns))

    def _drop(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        self._conns.pop(conn.sock.fileno(), None)
        conn.sock.close()
        self.counts.closed_by_server += 1

    def _run(self) -> None:
        next_top_up = time.monotonic() + self.top_up_every
        while not self._stop.is_set():
            timeout = max(0.0, min(0.1, next_top_up - time.monotonic()))
            for key, mask in self._selector.select(timeout):
                conn: _Conn = key.data
                with self._lock:
                    if conn.sock.fileno() not in self._conns:
                        continue
                    if mask & selectors.EVENT_WRITE and not conn.sent:
                        try:
                            conn.sock.send(SLOW_BODY_REQUEST)
                            conn.sent = True
                            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
                        except OSError:
                            self._drop(conn)
                        continue
                    if mask & selectors.EVENT_READ:
                        try:
                            data = conn.sock.recv(65536)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:  # closed (or refused) by the server
                            self._drop(conn)
            if time.monotonic() >= next_top_up:
                self._top_up()
                next_top_up = time.monotonic() + self.top_up_every
