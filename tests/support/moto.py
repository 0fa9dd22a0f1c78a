"""Run moto's HTTP server as a subprocess for integration and end-to-end tests.

In-process ``moto.mock_aws`` does not work with aiobotocore, so tests talk to a real
``moto.server`` over loopback, exactly like the agent talks to SSM.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

REGION = "us-east-1"

#: Dummy credentials: enough for botocore to sign requests, useless anywhere else.
DUMMY_AWS_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}

_STARTUP_TIMEOUT = 20.0
_START_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def boto3_client(service: str, endpoint_url: str, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` at ``endpoint_url`` with the dummy credentials."""
    import boto3  # imported lazily: unit tests never need it

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_AWS_ENV["AWS_SESSION_TOKEN"],
        **kwargs,
    )


class MotoServerError(RuntimeError):
    """moto_server did not start or did not answer."""


class MotoServer:
    """A running ``python -m moto.server`` subprocess bound to 127.0.0.1."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def reset(self) -> None:
        """Drop all moto state (``POST /moto-api/reset``)."""
        _post(f"{self.url}/moto-api/reset", timeout=10.0)

    def stop(self) -> None:
        """Terminate the server (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the server's combined stdout/stderr, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MotoServer(url={self.url!r}, pid={self.process.pid})"


def _post(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 (loopback http)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read()
        return body


def _wait_until_ready(server: MotoServer, deadline: float) -> bool:
    """Poll until the server answers; False if the process exited first."""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            _post(f"{server.url}/moto-api/reset", timeout=1.0)
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)  # bounded poll interval while waiting for the port to open
            continue
        return True
    raise MotoServerError(
        f"moto_server on {server.url} did not answer within {_STARTUP_TIMEOUT:.0f}s\n"
        f"{server.log_tail()}"
    )


def _spawn(port: int) -> MotoServer:
    env = {**os.environ, **DUMMY_AWS_ENV}
    fd, log_name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return MotoServer(process, port, Path(log_name))


def _warm_up(server: MotoServer) -> None:
    """Pay moto's lazy backend loading once, not in the first test."""
    ssm = boto3_client("ssm", server.url)
    kms = boto3_client("kms", server.url)
    try:
        ssm.describe_parameters()
        kms.list_keys()
    finally:
        ssm.close()
        kms.close()


def start_moto_server(*, warm_up: bool = True) -> MotoServer:
    """Start moto_server on a free loopback port and return once it answers.

    Retries with a new port if the chosen one was taken in the meantime.
    """
    last_log = ""
    for _ in range(_START_ATTEMPTS):
        server = _spawn(free_port())
        try:
            ready = _wait_until_ready(server, time.monotonic() + _STARTUP_TIMEOUT)
        except BaseException:
            server.stop()
            raise
        if not ready:
            last_log = server.log_tail()
            server.stop()
            continue
        atexit.register(server.stop)
        if warm_up:
            try:
                _warm_up(server)
            except BaseException:
                server.stop()
                raise
        return server
    raise MotoServerError(f"moto_server exited during startup:\n{last_log}")
