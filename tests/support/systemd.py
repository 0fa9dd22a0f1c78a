"""A fake systemd: the unix datagram socket that `$NOTIFY_SOCKET` names, keeping what it hears."""

from __future__ import annotations

import socket
from pathlib import Path


class FakeSystemd:
    """A bound unix datagram socket collecting the messages, as systemd would receive them.

    `address` is a path (sun_path holds 108 bytes: keep it short) or an abstract name
    (bytes starting with NUL). Each message is kept as its `KEY=value` lines, as a dict.
    """

    def __init__(self, address: str | bytes | Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(address) if isinstance(address, Path) else address)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        """Every message received so far (those waiting in the socket read first)."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def find(self, key: str) -> list[dict[str, str]]:
        """The messages that set `key`."""
        return [m for m in self.drain() if key in m]

    def statuses(self) -> list[str]:
        return [m["STATUS"] for m in self.find("STATUS")]

    def ready_indexes(self) -> list[int]:
        """Where READY=1 came among the messages."""
        return [i for i, m in enumerate(self.drain()) if m.get("READY") == "1"]

    def close(self) -> None:
        self.sock.close()
