"""The watcher's lease: `SET key token NX PX ttl`, renewed and released only by its holder.

A lease is not a lock (a paused holder can coexist with a new one for a moment); two watchers at
once are harmless because followers apply a record only if it is newer than what they hold.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: Redis, key: str, ttl: float) -> None:
        self._redis = redis
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.token = secrets.token_hex(16)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def release(self) -> bool:
        return bool(await self._release(keys=[self.key], args=[self.token]))
