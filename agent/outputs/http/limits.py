"""Limits on the work a request may cause: token buckets and the long-poll cap.

`TokenBucket` rate-limits work that reaches the parameter source on a request's behalf (an
on-demand fetch, a `POST /v1/refresh` cycle): `burst` at once, then `rate` a second. A refusal
raises `Limited`, is counted in `ssm_sidecar_http_rate_limited_total{kind}` and logged at most
once a second per kind. `LongPolls` caps the `?wait=` requests waiting at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from prometheus_client import Counter

from agent.logs import LogThrottle

log = structlog.get_logger(__name__)


class Limited(Exception):
    """A request refused by a limit; rendered like ApiError (`{"__type", "message"}`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class TokenBucket:
    def __init__(
        self,
        kind: str,
        rate: float,
        burst: int,
        refused: Counter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.rate = rate
        self.burst = burst
        self._refused = refused
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._log = LogThrottle(clock=clock)

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return self._tokens

    def take(self) -> None:
        """One token, or Limited (429 ThrottlingException) when the bucket is empty."""
        if self._refill() >= 1.0:
            self._tokens -= 1.0
            return
        retry = (1.0 - self._tokens) / self.rate if self.rate > 0 else float("inf")
        if self._refused is not None:
            self._refused.labels(kind=self.kind).inc()
        suppressed = self._log.allow(self.kind)
        if suppressed is not None:
            log.warning(
                "rate_limited",
                kind=self.kind,
                rate=self.rate,
                burst=self.burst,
                suppressed=suppressed,
            )
        raise Limited(
            429,
            "ThrottlingException",
            f"rate exceeded for {self.kind} ({self.rate:g}/s, burst {self.burst}); "
            f"retry in {retry:.1f}s",
        )


class LongPolls:
    """At most `limit` long-polls wait at once; each still holds its concurrency slot."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.waiting = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.waiting >= self.limit:
            raise Limited(
                429,
                "TooManyRequestsException",
                f"more than {self.limit} long-polls (?wait=) waiting (http.max_long_polls)",
            )
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1
