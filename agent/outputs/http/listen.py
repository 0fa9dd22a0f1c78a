"""Binding an aiohttp runner to a `HOST:PORT` or `unix:/path` listen string."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from aiohttp import web

SOCKET_MODE = 0o660  # apps in the owner's group may connect


class ListenError(Exception):
    """The listener cannot be opened; the message names the config key and the reason."""


class Listener:
    """One bound site; close() removes a unix socket file it created."""

    def __init__(self, key: str, listen: str) -> None:
        self.key = key
        self.listen = listen
        self._socket: Path | None = None

    async def bind(self, runner: web.AppRunner) -> None:
        site: web.BaseSite
        try:
            if self.listen.startswith("unix:"):
                path = Path(self.listen[5:])
                self._prepare_socket_path(path)
                site = web.UnixSite(runner, str(path))
                await site.start()
                self._socket = path
                os.chmod(path, SOCKET_MODE)
            else:
                host, _, port = self.listen.rpartition(":")
                site = web.TCPSite(runner, host.strip("[]"), int(port))
                await site.start()
        except OSError as exc:
            raise ListenError(
                f"{self.key}: cannot listen on {self.listen}: {exc.strerror}"
            ) from None

    def close(self) -> None:
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
