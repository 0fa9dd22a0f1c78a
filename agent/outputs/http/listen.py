"""Listening on a `HOST:PORT` or `unix:/path` listen string with a protocol factory.

Not aiohttp's TCPSite/UnixSite: those accept with the runner's own factory, and the listeners
accept through a ConnectionLimiter (connections.py) that wraps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOCKET_MODE = 0o660  # apps in the owner's group may connect
BACKLOG = 2048  # connections the kernel holds before we accept them (capped by somaxconn)


class ListenError(Exception):
    """The listener cannot be opened; the message names the config key and the reason."""


class Listener:
    """One bound site; close() removes a unix socket file it created."""

    def __init__(self, key: str, listen: str) -> None:
        self.key = key
        self.listen = listen
        self._socket: Path | None = None
        self._server: asyncio.Server | None = None

    async def bind(self, factory: Callable[[], asyncio.Protocol]) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.listen.startswith("unix:"):
                path = Path(self.listen[5:])
                self._prepare_socket_path(path)
                self._server = await loop.create_unix_server(factory, str(path), backlog=BACKLOG)
                self._socket = path
                os.chmod(path, SOCKET_MODE)
            else:
                host, _, port = self.listen.rpartition(":")
                self._server = await loop.create_server(
                    factory, host.strip("[]"), int(port), backlog=BACKLOG, reuse_address=True
                )
        except OSError as exc:
            raise ListenError(
                f"{self.key}: cannot listen on {self.listen}: {exc.strerror}"
            ) from None

    @property
    def addresses(self) -> list[Any]:
        if self._server is None:
            return []
        return [sock.getsockname() for sock in self._server.sockets]

    def close(self) -> None:
        """Stops accepting (open connections stay until their runner shuts them down)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket.unlink()
            self._socket = None

    def _prepare_socket_path(self, path: Path) -> None:
        """A socket file left by an agent that died would make bind() fail: remove it. A socket
        someone still listens on, or any other file, is left alone and reported."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ListenError(f"{self.key}: {path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()
                return
        raise ListenError(f"{self.key}: another process is listening on {path}")
