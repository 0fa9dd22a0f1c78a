"""The fleet's keys in Valkey/Redis, and every command the fleet sends there.

Per fleet (name + a fingerprint of the parameters it serves, in one hash slot):
  lease    the watcher's lease (lease.py)
  stream   one entry per record: `prev` (the entry before it when written) and `rec` (signed)
  state    hash: parameter name -> its latest signed record (deletions too), `__meta__` (signed:
           when the watcher last completed a cycle, and the digest of the records), `__key__`
           (the fleet key's KMS ciphertext and its parameter ARN, for followers KMS allows)
  members  sorted set: agent id -> last heartbeat (sizes the per-name fetch window)

Gaps: Redis 7.0's XREAD from a trimmed id silently continues at the first retained entry, so each
entry names the entry before it (`prev`); a follower whose last id is not that `prev` resyncs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from agent.fleet.lease import Lease

META = "__meta__"
KEY = "__key__"
RESERVED = (META, KEY)
STREAM_MAXLEN = 10_000

# Publish a cycle's records atomically, only while the lease is ours, each entry chained to the
# one before it. KEYS: stream, state, lease. ARGV: token, maxlen, meta, n, then name/wire pairs.
_PUBLISH = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return false
end
local prev = '0-0'
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then prev = last[1][1] end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local name = ARGV[5 + 2 * i]
  local wire = ARGV[6 + 2 * i]
  prev = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'prev', prev, 'rec', wire)
  redis.call('HSET', KEYS[2], name, wire)
end
redis.call('HSET', KEYS[2], '__meta__', ARGV[3])
return prev
"""

Entry = tuple[str, str, str]  # (id, prev, signed record)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class FleetStore:
    def __init__(self, url: str, prefix: str, block: float, lease_ttl: float) -> None:
        self.prefix = prefix
        self.block = block
        self.redis: Redis = Redis.from_url(url, socket_connect_timeout=3.0, socket_timeout=5.0)
        # The blocking reads get their own connection, with room for the BLOCK time.
        self._reader: Redis = Redis.from_url(
            url, socket_connect_timeout=3.0, socket_timeout=block + 5.0
        )
        self.stream = prefix + "stream"
        self.state = prefix + "state"
        self.members = prefix + "members"
        self.lease = Lease(self.redis, prefix + "lease", lease_ttl)
        self._publish = self.redis.register_script(_PUBLISH)

    async def close(self) -> None:
        await self.redis.aclose()
        await self._reader.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    async def publish(self, records: Sequence[tuple[str, str]], meta: str) -> str | None:
        """XADD each (name, signed record) and HSET it into the state, then the meta; None when
        the lease is no longer ours (nothing was written)."""
        args: list[str | int] = [self.lease.token, STREAM_MAXLEN, meta, len(records)]
        for name, wire in records:
            args.extend((name, wire))
        last = await self._publish(keys=[self.stream, self.state, self.lease.key], args=args)
        return None if last is None else _text(last)

    async def read_state(self) -> tuple[dict[str, str], str]:
        """The state hash and the stream's last id, read together (MULTI)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.state)
            pipe.xrevrange(self.stream, "+", "-", count=1)
            raw, last = await pipe.execute()
        state = {_text(k): _text(v) for k, v in raw.items()}
        return state, (_text(last[0][0]) if last else "0-0")

    async def get_key_entry(self) -> str | None:
        raw = await self.redis.hget(self.state, KEY)
        return None if raw is None else _text(raw)

    async def set_key_entry(self, value: str) -> None:
        await self.redis.hset(self.state, KEY, value)

    async def read(self, last_id: str) -> list[Entry]:
        """Entries after `last_id`, blocking up to `block` seconds for the first."""
        answer: Any = await self._reader.xread(
            {self.stream: last_id}, block=int(self.block * 1000), count=500
        )
        entries: list[Entry] = []
        for _stream, items in answer or []:
            for entry_id, fields in items:
                f: Mapping[str, str] = {_text(k): _text(v) for k, v in fields.items()}
                entries.append((_text(entry_id), f.get("prev", ""), f.get("rec", "")))
        return entries

    async def heartbeat(self, member: str) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.members, {member: now})
            pipe.zremrangebyscore(self.members, 0, now - 120)
            await pipe.execute()

    async def member_count(self, within: float = 60.0) -> int:
        return int(await self.redis.zcount(self.members, time.time() - within, "+inf"))
