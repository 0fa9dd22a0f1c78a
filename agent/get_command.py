"""`ssm-sidecar get NAME`: print one value from a running agent, for shell scripts.

`--secret` reads a Secrets Manager secret (`/v1/secrets/NAME`) instead of a parameter.

The URL and token file come from --url / --token-file, else from the config's http.listen and
http.token_file (when a config is given or found), else the built-in defaults. The value goes to
stdout exactly as served (no newline added); any failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from agent.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    HttpConfig,
    default_config_path,
    load_config,
)

# The agent's token header (agent.outputs.http.context.TOKEN_HEADER, which a test holds equal):
# named here so that `get` starts without importing the server and aiohttp.
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"  # noqa: S105 (a header name)
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TIMEOUT = 10.0


class GetError(Exception):
    """Why the value could not be printed: one line for the user."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # "http://host:port" or "unix:/path"
    token_file: Path


def target_for(url: str | None, token_file: str | None, config: str | None) -> Target:
    """Flags first, then the config (the -c file, or the default one if it exists), then defaults.

    Raises ConfigError for a config given with -c (or found) that is invalid."""
    http = HttpConfig()
    if url is None or token_file is None:
        path = config or default_config_path()
        named = config is not None or path != DEFAULT_CONFIG_PATH  # -c or $SSM_SIDECAR_CONFIG
        if named or Path(path).exists():
            http = load_config(path).http
    return Target(
        url=url or url_for_listen(http.listen),
        token_file=Path(token_file) if token_file else http.token_file,
    )


def url_for_listen(listen: str) -> str:
    if listen.startswith("unix:"):
        return listen
    host, _, port = listen.rpartition(":")
    return f"http://{host}:{port}"


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise GetError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise GetError(f"the token file {path} is empty")
    return token


async def fetch_value(name: str, target: Target, *, secret: bool = False) -> bytes:
    """`get_value` from a coroutine (the blocking request runs in a thread)."""
    import asyncio  # not at the top: `ssm-sidecar get` itself never starts an event loop

    return await asyncio.to_thread(get_value, name, target, secret=secret)


def get_value(name: str, target: Target, *, secret: bool = False) -> bytes:
    """The value the agent at `target` serves for `name`; GetError says why not."""
    token = _read_token(target.token_file)
    if secret:
        path = "/v1/secrets/" + quote(name, safe="/:")
    else:
        path = "/v1/parameters/" + quote(name.lstrip("/"), safe="/")
    try:
        status, body = _http_get(target.url, path, token)
    except TimeoutError:
        raise GetError(f"the agent at {target.url} did not answer within {TIMEOUT:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise GetError(f"no agent answering at {target.url} ({_reason(exc)})") from None
    if status == 200:
        return body
    raise GetError(_explain(name, status, body, target))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _http_get(url: str, path: str, token: str) -> tuple[int, bytes]:
    """One GET with the standard library (blocking): (status, body)."""
    conn: http.client.HTTPConnection
    if url.startswith("unix:"):
        conn = _UnixConnection(url[5:])
    else:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={TOKEN_HEADER: token})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def _explain(name: str, status: int, body: bytes, target: Target) -> str:
    message = _message_of(body)
    if status == 401 or status == 403:
        return f"the agent at {target.url} refused the token from {target.token_file}"
    if status == 404:
        return f"{name}: {message or 'not served by the agent'}"
    if status == 503:
        return f"the agent at {target.url} is not ready yet (first load not complete)"
    return f"{name}: the agent answered HTTP {status}" + (f": {message}" if message else "")


def _message_of(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("message", "")) if isinstance(data, dict) else ""


def run_get(
    name: str, url: str | None, token_file: str | None, config: str | None, *, secret: bool = False
) -> int:
    try:
        target = target_for(url, token_file, config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        value = get_value(name, target, secret=secret)
    except GetError as exc:
        print(f"ssm-sidecar: get: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
    return EXIT_OK
