"""structlog set up as one JSON object per line on stderr (or a console format for people).

Values are never passed to the logger. As a second line of defence, a redactor replaces any
current secret value that still finds its way into a log event (e.g. inside an exception text).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "[redacted]"
MIN_REDACT_LENGTH = 4
MAX_EXTRA = 4096
# Fields that only ever hold names, versions, codes or counts (never free text): not scanned,
# so that a change event costs the same with 10 or 10,000 values held.
SAFE_FIELDS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "name",
        "change",
        "old_version",
        "new_version",
        "code",
        "operation",
        "path",
        "parameters",
        "calls",
        "failures",
        "serving",
        "throttled",
    }
)


class Redactor:
    """A structlog processor that scrubs known parameter values out of every string field."""

    def __init__(self) -> None:
        self._served: set[str] = set()
        # Values fetched on demand (outside the snapshot), oldest first, bounded.
        self._extra: dict[str, None] = {}
        self._values: tuple[str, ...] = ()

    def update(self, values: Iterable[str]) -> None:
        """The values of the current snapshot (replacing the previous snapshot's)."""
        self._served = {v for v in values if len(v) >= MIN_REDACT_LENGTH}
        self._rebuild()

    def add(self, *values: str | None) -> None:
        """Values that are not in the snapshot (on-demand reads); the newest MAX_EXTRA kept."""
        for v in values:
            if v is not None and len(v) >= MIN_REDACT_LENGTH:
                self._extra.pop(v, None)
                self._extra[v] = None
        while len(self._extra) > MAX_EXTRA:
            del self._extra[next(iter(self._extra))]
        self._rebuild()

    def _rebuild(self) -> None:
        # Longest first, so a value that contains another is scrubbed whole.
        self._values = tuple(sorted(self._served | set(self._extra), key=len, reverse=True))

    def _scrub(self, text: str) -> str:
        for v in self._values:
            if v in text:
                text = text.replace(v, REDACTED)
        return text

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._values:
            return event
        for k, v in event.items():
            if k in SAFE_FIELDS:
                continue
            if isinstance(v, str):
                event[k] = self._scrub(v)
            elif not isinstance(v, int | float | bool | type(None)):
                text = str(v)
                scrubbed = self._scrub(text)
                if scrubbed != text:
                    event[k] = scrubbed
        return event


redactor = Redactor()


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of writing (it may be replaced later)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def setup_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    out: Any = stream or _CurrentStderr()
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
