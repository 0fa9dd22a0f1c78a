"""structlog set up as one JSON object per line on stderr (or a console format for people).

Values are never passed to the logger. As a second line of defence, a redactor replaces any
current secret value that still finds its way into a log event (e.g. inside an exception text).

Records of the standard `logging` module (aiohttp, asyncio, `warnings`) are rendered by the same
processors, so stderr holds nothing but these lines. Only their warnings and errors are kept,
whatever `log.level` says (botocore's debug records quote response bodies, watchfiles reports
every change at info). Their message is the event, scrubbed like any other field; a malformed
HTTP request (aiohttp logs a traceback) becomes one `http_bad_request` warning naming the peer
and the parser's complaint.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from aiohttp.http_exceptions import HttpProcessingError

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "[redacted]"
MIN_REDACT_LENGTH = 4
MAX_EXTRA = 4096
# How much of a parser's complaint about a request is kept (it quotes the client's bytes).
MAX_PARSER_ERROR = 200
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

    def scrub(self, text: str) -> str:
        """`text` with every known value replaced."""
        return self._scrub(text) if self._values else text

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


# Library records below this level are dropped (see the module's docstring).
FOREIGN_MIN_LEVEL = logging.WARNING


def _bad_request(exc_info: Any) -> HttpProcessingError | None:
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    # Looked up, not imported: a process that never imported aiohttp (`check`) cannot hold one.
    kind = getattr(sys.modules.get("aiohttp.http_exceptions"), "HttpProcessingError", None)
    return exc if kind is not None and isinstance(exc, kind) else None


def _foreign_record(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A stdlib record: its message scrubbed; a malformed request summed up without traceback."""
    message = str(event.get("event", ""))
    exc = _bad_request(event.get("exc_info"))
    if exc is not None:
        complaint = next((line for line in str(exc.message).splitlines() if line.strip()), "")
        event.pop("exc_info", None)
        event["event"] = "http_bad_request"
        event["level"] = "warning"
        event["error"] = f"{type(exc).__name__}: {complaint.strip()}"[:MAX_PARSER_ERROR]
        if " from " in message:
            event["peer"] = message.rpartition(" from ")[2]
        return event
    event["event"] = redactor.scrub(message)
    return event


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler this module puts on the root logger (replaced at each setup)."""


def _route_stdlib(out: Any, level: str, renderer: Any) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _foreign_record,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    handler = _StdlibHandler(out)
    handler.setFormatter(formatter)
    if LEVELS[level] > logging.WARNING:
        # A malformed request is logged as a warning (below): not at this level.
        handler.addFilter(lambda record: _bad_request(record.exc_info) is None)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(LEVELS[level], FOREIGN_MIN_LEVEL))
    logging.captureWarnings(True)


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
    _route_stdlib(out, level, renderer)
