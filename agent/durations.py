"""Human durations ("500ms", "30s", "5m", "1h", "1m30s") as float seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)", re.ASCII)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`; bare numbers are seconds. Raises ValueError with the reason."""
    if isinstance(text, bool):
        raise ValueError('expected a duration such as "30s", "5m" or "1h"')
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        s = text.strip()
        pos, seconds = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT[m.group(2)]
            pos = m.end()
        if not s or pos != len(s):
            raise ValueError(f'{text!r} is not a duration such as "30s", "5m" or "1h"')
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds % 3600 == 0 and seconds:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
