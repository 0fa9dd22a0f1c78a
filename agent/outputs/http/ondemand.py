"""Names outside [[parameters]] but under http.on_demand_prefixes: fetched on first request.

`get_version` fetches, the same way, another version or label of a name the agent serves
(`name:1` while it holds version 2): the caller checks that the name is served.

Each answer (a parameter, or "does not exist") is kept for one refresh interval, at most
`max_entries` names (both kinds together). Concurrent
requests for one name that is not cached make a single source call.
Source failures are not cached: the next request tries again. Source calls (not cache hits,
not requests that join a call in flight) take a token from `limit` (http.on_demand_rate and
on_demand_burst): an empty bucket raises limits.Limited (429 ThrottlingException).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agent.outputs.http.limits import TokenBucket
from agent.snapshot import Parameter

Fetch = Callable[[str], Awaitable[Parameter | None]]
MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _Entry:
    parameter: Parameter | None
    expires: float


def under_prefixes(name: str, prefixes: Sequence[str]) -> bool:
    """True when `name` (a selector such as `:3` allowed) lies under one of `prefixes`."""
    base = name if name.startswith("arn:") else name.split(":", 1)[0]
    return any(base.startswith(p.rstrip("/") + "/") for p in prefixes)


class OnDemandCache:
    def __init__(
        self,
        fetch: Fetch,
        prefixes: Sequence[str],
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        limit: TokenBucket | None = None,
    ) -> None:
        self._fetch = fetch
        self._prefixes = tuple(prefixes)
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._limit = limit
        self._entries: dict[str, _Entry] = {}
        # One source call per name at a time: later callers await the call in flight.
        self._in_flight: dict[str, asyncio.Future[Parameter | None]] = {}

    def covers(self, name: str) -> bool:
        return under_prefixes(name, self._prefixes)

    async def get(self, name: str) -> Parameter | None:
        """The parameter (None when the source says it does not exist, or it is not covered).
        Raises what the source raises (SourceError) when the source cannot answer."""
        if not self.covers(name):
            return None
        return await self.get_version(name)

    async def get_version(self, name: str) -> Parameter | None:
        """Like `get`, without the prefix rule: for `name:selector` of a name the agent serves."""
        entry = self._entries.get(name)
        if entry is not None and entry.expires > self._clock():
            return entry.parameter
        flight = self._in_flight.get(name)
        if flight is None:
            if self._limit is not None:
                self._limit.take()
            flight = asyncio.ensure_future(self._load(name))
            self._in_flight[name] = flight
            flight.add_done_callback(lambda _: self._in_flight.pop(name, None))
        # shield: one caller giving up (client gone) must not cancel the others' answer.
        return await asyncio.shield(flight)

    async def _load(self, name: str) -> Parameter | None:
        parameter = await self._fetch(name)
        self._store(name, _Entry(parameter, self._clock() + self._ttl))
        return parameter

    def _store(self, name: str, entry: _Entry) -> None:
        self._entries.pop(name, None)  # re-inserted last: the dict stays in expiry order
        self._entries[name] = entry
        if len(self._entries) > self._max:
            now = self._clock()
            self._entries = {n: e for n, e in self._entries.items() if e.expires > now}
            while len(self._entries) > self._max:
                del self._entries[next(iter(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)
