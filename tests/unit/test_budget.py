"""The SSM call budget: a token bucket and a start-up splay (agent/fleet/budget.py)."""

from __future__ import annotations

import random
import time

from agent.fleet.budget import CallBudget


async def test_bucket_allows_a_burst_then_the_rate() -> None:
    budget = CallBudget(20.0)
    started = time.monotonic()
    for _ in range(20):
        await budget.take()
    assert budget.waited == 0.0  # a full bucket: one second's worth at once
    for _ in range(5):
        await budget.take()
    assert budget.waited >= 5 / 20 * 0.9  # then 20 calls/s
    assert time.monotonic() - started >= 0.2


async def test_a_larger_burst_lets_a_first_load_through_at_once() -> None:
    budget = CallBudget(20.0, burst=200)
    for _ in range(200):
        await budget.take()
    assert budget.waited == 0.0
    await budget.take()
    assert budget.waited > 0.0  # the 201st waits for the rate


async def test_zero_means_no_cap() -> None:
    budget = CallBudget(0.0)
    for _ in range(1000):
        await budget.take()
    assert budget.waited == 0.0


async def test_splay_delays_only_the_first_call() -> None:
    class Fixed(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return 0.2

    budget = CallBudget(0.0, splay=5.0, rng=Fixed())
    started = time.monotonic()
    await budget.take()
    first = time.monotonic() - started
    await budget.take()
    assert 0.2 <= first < 1.0
    assert time.monotonic() - started - first < 0.1
