"""Where a request comes from, as far as its headers tell: relayed by a proxy, or named by a
non-loopback Host (a DNS-rebinding web page reaches 127.0.0.1 under its own host name)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from agent.outputs.http.context import ApiError


def loopback_address(host: str) -> bool:
    """`localhost`, `127.0.0.1`, `::1`, `[::1]` (any loopback address)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """`127.0.0.1:2773` -> `127.0.0.1`, `[::1]:2773` -> `[::1]`, `localhost` -> `localhost`."""
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    return header.rpartition(":")[0] if ":" in header else header


@lru_cache(maxsize=64)
def loopback_host_header(header: str) -> bool:
    """True when a Host header names a loopback address (a few distinct values, cached)."""
    return loopback_address(host_name(header))


def proxy_refusal(header: str) -> ApiError:
    return ApiError(
        400, "ValidationException", f"requests relayed by a proxy ({header}) are refused"
    )


def host_refusal(header: str) -> ApiError:
    shown = header if len(header) <= 100 else header[:100] + "..."
    return ApiError(
        403,
        "AccessDeniedException",
        f"the Host header must name a loopback address (127.0.0.1, ::1 or localhost), got "
        f"{shown!r}: address the agent as http://127.0.0.1:<port>",
    )
