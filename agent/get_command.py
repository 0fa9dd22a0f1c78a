"""`ssm-sidecar get NAME`: print one value from a running agent, for shell scripts.

`--secret` reads a Secrets Manager secret (`/v1/secrets/NAME`) instead of a parameter.

The URL and token file come from --url / --token-file, else from the config's http.listen and
http.token_file (when a config is given or found), else the built-in defaults. The value goes to
stdout exactly as served (no newline added); any failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from agent.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    HttpConfig,
    default_config_path,
    load_config,
)
from agent.outputs.http.context import TOKEN_HEADER

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
    token = _read_token(target.token_file)
    if secret:
        path = "/v1/secrets/" + quote(name, safe="/:")
    else:
        path = "/v1/parameters/" + quote(name.lstrip("/"), safe="/")
    if target.url.startswith("unix:"):
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=target.url[5:])
        base = "http://localhost"
    else:
        connector = aiohttp.TCPConnector()
        base = target.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(base + path, headers={TOKEN_HEADER: token}) as resp,
        ):
            body = await resp.read()
            if resp.status == 200:
                return body
            raise GetError(_explain(name, resp.status, body, target))
    except aiohttp.ClientConnectionError as exc:
        raise GetError(f"no agent answering at {target.url} ({_reason(exc)})") from None
    except TimeoutError:
        raise GetError(f"the agent at {target.url} did not answer within {TIMEOUT:g}s") from None


def _reason(exc: Exception) -> str:
    cause = exc.__cause__ or exc
    return getattr(cause, "strerror", None) or type(cause).__name__


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
        value = asyncio.run(fetch_value(name, target, secret=secret))
    except GetError as exc:
        print(f"ssm-sidecar: get: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
    return EXIT_OK
