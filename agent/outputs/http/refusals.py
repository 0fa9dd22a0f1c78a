"""Log lines for refused requests, priced so that an attacker cannot make logging expensive.

A refusal (401/403 on a token route, an SDK request refused) is worth a line, but whoever can
connect can send thousands a second, and every string field of a line passes the redactor. So
each kind of refusal (event and code) gets at most one line a second, carrying how many were
left out since the previous one (`suppressed`), and every field from the request is cut to
`logs.CLIP_LENGTH` characters. `ssm_sidecar_http_requests_total{route,code}` counts them all.
"""

from __future__ import annotations

import structlog

from agent.logs import LogThrottle, clip

log = structlog.get_logger(__name__)


class RefusalLog:
    def __init__(self, throttle: LogThrottle | None = None) -> None:
        self._throttle = throttle or LogThrottle()

    def note(self, event: str, code: str, **fields: str | int | None) -> bool:
        """Logs `event` unless one of this (event, code) was logged within the second; True
        when a line was written."""
        suppressed = self._throttle.allow((event, code))
        if suppressed is None:
            return False
        safe = {k: clip(v) if isinstance(v, str) else v for k, v in fields.items()}
        log.info(event, code=code, suppressed=suppressed, **safe)
        return True
