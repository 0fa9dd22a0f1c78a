"""structlog set up as one JSON object per line on stderr (or a console format for people).

Values are never passed to the logger. As a second line of defence, a redactor replaces any
current secret value that still finds its way into a log event (e.g. inside an exception text).

Records of the standard `logging` module (aiohttp, asyncio, `warnings`) are rendered by the same
processors, so stderr holds nothing but these lines. Only their warnings and errors are kept,
whatever `log.level` says (botocore's debug records quote response bodies). Their message is
the event, scrubbed like any other field; a malformed HTTP request (aiohttp logs a traceback)
becomes one `http_bad_request` warning naming the peer and the parser's complaint.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Hashable, Iterable, MutableMapping
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
CLIP_LENGTH = 200  # attacker-controlled fields are cut to this many characters
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


GRAM = MIN_REDACT_LENGTH  # every held value is at least this long


class ValueIndex:
    """Finds held values in a text at a cost that grows with the text, not with the values held.

    Values are indexed by their first GRAM characters; a text is cut into its GRAM-grams (all in
    C: zip, join, filter), and only the grams that start a held value are looked at further, each
    occurrence with one set lookup per distinct length of the values sharing that start, longest
    first. About 75 ns per character of text, flat from 0 to 100,000 values held.
    (One regex alternation of all values was measured slower than the plain loop: Python's
    regex engine tries every alternative at every position. See docs/benchmarks.md.)
    """

    def __init__(self) -> None:
        # gram -> [(length, values of that length starting with gram)], longest first
        self._index: dict[str, list[tuple[int, set[str]]]] = {}

    def __len__(self) -> int:
        return sum(len(vs) for buckets in self._index.values() for _, vs in buckets)

    def add(self, value: str) -> None:
        buckets = self._index.setdefault(value[:GRAM], [])
        for length, values in buckets:
            if length == len(value):
                values.add(value)
                return
        buckets.append((len(value), {value}))
        buckets.sort(key=lambda b: b[0], reverse=True)

    def discard(self, value: str) -> None:
        buckets = self._index.get(value[:GRAM])
        if not buckets:
            return
        for i, (length, values) in enumerate(buckets):
            if length == len(value):
                values.discard(value)
                if not values:
                    del buckets[i]
                break
        if not buckets:
            del self._index[value[:GRAM]]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where held values occur, overlapping occurrences merged into one span."""
        if len(text) < GRAM or not self._index:
            return []
        # Every GRAM-gram of the text, looked up in the index, all in C. (Not a set of grams
        # intersected with the index: set.intersection(dict) walks every held value.)
        grams = map("".join, zip(*(text[i:] for i in range(GRAM)), strict=False))
        hits = set(filter(self._index.__contains__, grams))
        if not hits:
            return []
        found: list[tuple[int, int]] = []
        for gram in hits:
            buckets = self._index[gram]
            at = text.find(gram)
            while at >= 0:
                for length, values in buckets:
                    if text[at : at + length] in values:
                        found.append((at, at + length))
                        break
                at = text.find(gram, at + 1)
        found.sort()
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def scrub(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts.append(text[last:start])
            parts.append(REDACTED)
            last = end
        parts.append(text[last:])
        return "".join(parts)


class Redactor:
    """A structlog processor that scrubs known parameter values out of every string field."""

    def __init__(self) -> None:
        self._served: frozenset[str] = frozenset()
        # Values fetched on demand (outside the snapshot), oldest first, bounded.
        self._extra: dict[str, None] = {}
        self._index = ValueIndex()

    def update(self, values: Iterable[str]) -> None:
        """The values of the current snapshot (replacing the previous snapshot's)."""
        served = frozenset(v for v in values if len(v) >= MIN_REDACT_LENGTH)
        if served == self._served:
            return
        for v in self._served - served:
            if v not in self._extra:
                self._index.discard(v)
        for v in served - self._served:
            self._index.add(v)
        self._served = served

    def add(self, *values: str | None) -> None:
        """Values that are not in the snapshot (on-demand reads); the newest MAX_EXTRA kept."""
        for v in values:
            if v is not None and len(v) >= MIN_REDACT_LENGTH:
                self._extra.pop(v, None)
                self._extra[v] = None
                self._index.add(v)
        while len(self._extra) > MAX_EXTRA:
            oldest = next(iter(self._extra))
            del self._extra[oldest]
            if oldest not in self._served:
                self._index.discard(oldest)

    def reset(self) -> None:
        """Forget every value (for tests)."""
        self._served = frozenset()
        self._extra.clear()
        self._index = ValueIndex()

    def scrub(self, text: str) -> str:
        """`text` with every known value replaced."""
        return self._index.scrub(text)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._served and not self._extra:
            return event
        for k, v in event.items():
            if k in SAFE_FIELDS:
                continue
            if isinstance(v, str):
                event[k] = self.scrub(v)
            elif not isinstance(v, int | float | bool | type(None)):
                text = str(v)
                scrubbed = self.scrub(text)
                if scrubbed != text:
                    event[k] = scrubbed
        return event


def clip(text: str | None, limit: int = CLIP_LENGTH) -> str:
    """An attacker-controlled string (a header, a path, a target) cut to `limit` characters for
    a log line, so that nobody outside can make a line long or its redaction costly."""
    if text is None:
        return ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} chars)"


class LogThrottle:
    """At most one line per key per `interval`: `allow(key)` is None for a line to drop, else
    the number of lines of that key dropped since the last one (log it as `suppressed`)."""

    def __init__(
        self,
        interval: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._dropped: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self._max_keys:
            self._last.clear()
            self._dropped.clear()
        self._last[key] = now
        return self._dropped.pop(key, 0)


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
    configure_structlog(out, level, renderer)
    _route_stdlib(out, level, renderer)


def configure_structlog(out: Any, level: str, renderer: Any, scrub: Any = redactor) -> None:
    """The agent's structlog pipeline, one rendered event a line on `out`. `scrub` is the agent's
    redactor; the redaction bench passes others through the same pipeline to compare them."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
