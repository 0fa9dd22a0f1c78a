"""The per-agent SSM budget, with or without a fleet: a token bucket on every SSM call
(`source.max_calls_per_second`) and a start-up splay (`refresh.splay`) before the agent's first
SSM call, so a fleet restarted together does not spike the account's shared quota."""

from __future__ import annotations

import asyncio
import random
import time


class CallBudget:
    def __init__(
        self,
        rate: float,
        splay: float = 0.0,
        rng: random.Random | None = None,
        burst: float | None = None,
    ) -> None:
        self.rate = rate
        # Calls allowed at once before the rate applies (default: one second's worth).
        self.burst = max(1.0, rate if burst is None else burst)
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._splay = splay
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting for tokens (tests, benchmarks)

    async def take(self) -> None:
        """Wait for the splay (first call only), then for a token; 0 = no cap."""
        async with self._lock:
            if self._splay > 0:
                splay, self._splay = self._rng.uniform(0, self._splay), 0.0
                await asyncio.sleep(splay)
                self._updated = time.monotonic()
            if self.rate <= 0:
                return
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
                self.waited += wait
                await asyncio.sleep(wait)
