"""Fleet test helpers: configs for agents of one fleet, each behind its own faithful-KMS proxy
(so each agent's SSM calls are counted apart), and reading everything a Valkey holds."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.config import Config
from tests.support.agents import ssm_config
from tests.support.fault_proxy import FaultProxy

KEY_PARAMETER = "/fleet/key"
FLEET_KEY = "k" * 8 + "-fleet-key-0123456789"
SSM_READS = ("GetParameter", "GetParameters", "GetParametersByPath")


def fleet_config(
    proxy_url: str,
    redis_url: str,
    base: Path,
    *,
    watch_interval: str = "1s",
    safety_interval: str = "10m",
    interval: str = "30s",
    parameters: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> Config:
    base.mkdir(parents=True, exist_ok=True)
    return ssm_config(
        proxy_url,
        parameters or [{"path": "/app"}],
        base,
        interval=interval,
        fleet={
            "url": redis_url,
            "name": "test",
            "key_parameter": KEY_PARAMETER,
            "watch_interval": watch_interval,
            "safety_interval": safety_interval,
        },
        **sections,
    )


def seed(ssm: Any, kms_key_id: str | None = None) -> None:
    """The fleet key, a String and a SecureString under /app."""
    ssm.put_parameter(Name=KEY_PARAMETER, Value=FLEET_KEY, Type="SecureString")
    ssm.put_parameter(Name="/app/plain", Value="hello", Type="String")
    extra = {"KeyId": kms_key_id} if kms_key_id else {}
    ssm.put_parameter(Name="/app/secret", Value="s3cret-one", Type="SecureString", **extra)


def ssm_calls(proxy: FaultProxy) -> int:
    return sum(proxy.count(op) for op in SSM_READS)


@contextlib.contextmanager
def proxies(moto_url: str, n: int) -> Iterator[list[FaultProxy]]:
    started = [FaultProxy(moto_url, faithful_kms=True).start() for _ in range(n)]
    try:
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def dump_redis(port: int) -> list[bytes]:
    """Every key and every value (strings, hashes, streams, sorted sets) as raw bytes, read
    with plain RESP so nothing is decoded away."""
    import redis

    client: Any = redis.Redis(host="127.0.0.1", port=port)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            out.append(key)
            kind = client.type(key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"hash":
                for f, v in client.hgetall(key).items():
                    out.extend((f, v))
            elif kind == b"stream":
                for entry_id, fields in client.xrange(key):
                    out.append(entry_id)
                    for f, v in fields.items():
                        out.extend((f, v))
            elif kind == b"zset":
                out.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
            else:
                out.append(kind)
    finally:
        client.close()
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
