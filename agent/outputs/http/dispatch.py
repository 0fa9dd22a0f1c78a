"""Which endpoint a request names: a dict lookup on its exact path, else the path templates.

The API listener runs aiohttp's low-level `web.Server` with the Guard as its one handler, not a
`web.Application`: the application layer (its router's walk from the longest path prefix to
"/", a match-info object, the on_response_prepare hook) cost ~3 us of a ~14 us request, more
than all the guards together (issue #15). `Router` finds the endpoint instead:

- an exact path (`/systemsmanager/parameters/get`) is one dict lookup;
- else the templates (`/v1/parameters/{name:.+}`) whose literal prefix the path starts with,
  longest prefix first; the values of a matching template are stored in the request's
  `path_values` (an `ApiRequest`: what `request.match_info` holds in an aiohttp application);
- a path that matches but not with this method gets the router's `not_allowed` target, any other
  path its `not_found` target.

Templates match as aiohttp's router matches them: on the path with `%2F` and `%25` still encoded
(`rel_url.path_safe`), `{var}` one segment, `{var:regex}` the regex, the values then decoded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from aiohttp import web

T = TypeVar("T")

_NO_VALUES: Mapping[str, str] = MappingProxyType({})


class ApiRequest(web.Request):
    """aiohttp's Request plus `path_values`: the values of the path template it matched, by
    variable name (what `match_info` holds in an aiohttp Application)."""

    ATTRS = web.Request.ATTRS | frozenset(["path_values"])
    path_values: Mapping[str, str] = _NO_VALUES


_PART = re.compile(r"(\{[_a-zA-Z][^{}]*(?:\{[^{}]*\}[^{}]*)*\})")
_VAR = re.compile(r"\{(?P<var>[_a-zA-Z][_a-zA-Z0-9]*)\}")
_VAR_WITH_RE = re.compile(r"\{(?P<var>[_a-zA-Z][_a-zA-Z0-9]*):(?P<re>.+)\}")
_SEGMENT = "[^{}/]+"
_LITERAL = re.compile(r"/[A-Za-z0-9/_.~-]*")
_TAIL = re.compile(r"\{(?P<var>[_a-zA-Z][_a-zA-Z0-9]*):\.\+\}")


def path_value(request: web.Request, name: str) -> str:
    """The value of the template variable `name` in the path of `request`."""
    values: Mapping[str, str] = request.path_values  # type: ignore[attr-defined]
    return values[name]


def _decoded(value: str) -> str:
    return value.replace("%2F", "/").replace("%25", "%") if "%" in value else value


@dataclass(frozen=True, slots=True)
class _Template(Generic[T]):
    prefix: str
    pattern: re.Pattern[str]
    methods: dict[str, T]
    # `prefix{var:.+}`: the rest of the path, when not empty and without a line break (what
    # `.` matches), is the value; no regex runs. None for any other template.
    tail: str | None


def canonical(path: str) -> str:
    """The path with each `{var:regex}` shown as `{var}`: the route's metric label."""
    return "".join(
        "{" + found["var"] + "}" if (found := _VAR_WITH_RE.fullmatch(part)) else part
        for part in _PART.split(path)
    )


def _compile(path: str) -> tuple[str, re.Pattern[str]] | None:
    """(literal prefix, pattern) of a template; None for a path without variables."""
    parts = _PART.split(path)
    if len(parts) == 1:
        return None
    pattern = ""
    for part in parts:
        if found := _VAR.fullmatch(part):
            pattern += f"(?P<{found['var']}>{_SEGMENT})"
        elif found := _VAR_WITH_RE.fullmatch(part):
            pattern += f"(?P<{found['var']}>{found['re']})"
        elif "{" in part or "}" in part:
            raise ValueError(f"invalid path template {path!r} at {part!r}")
        else:
            pattern += re.escape(part)
    return parts[0], re.compile(pattern)


class Router(Generic[T]):
    """Paths and methods to targets (see the module docstring)."""

    def __init__(self, not_found: T, not_allowed: T) -> None:
        self._exact: dict[str, dict[str, T]] = {}
        self._templates: list[_Template[T]] = []
        self.not_found = not_found
        self.not_allowed = not_allowed

    def add(self, method: str, path: str, target: T) -> None:
        """`target` for `method` (exactly as sent: GET adds no HEAD) on `path`."""
        compiled = _compile(path)
        if compiled is None:
            if not _LITERAL.fullmatch(path):
                raise ValueError(f"path {path!r} needs quoting; the router takes plain paths")
            methods = self._exact.setdefault(path, {})
        else:
            prefix, pattern = compiled
            found = next((t for t in self._templates if t.pattern.pattern == pattern.pattern), None)
            if found is None:
                tail = _TAIL.fullmatch(path[len(prefix) :])
                found = _Template(prefix, pattern, {}, tail["var"] if tail else None)
                self._templates.append(found)
                self._templates.sort(key=lambda t: len(t.prefix), reverse=True)
            methods = found.methods
        if method in methods:
            raise ValueError(f"{method} {path} is routed twice")
        methods[method] = target

    def find(self, request: web.Request) -> T:
        """The target for the request's path and method; template values go to `path_values`."""
        path = request.rel_url.path_safe
        methods = self._exact.get(path)
        if methods is None:
            for template in self._templates:
                if path.startswith(template.prefix):
                    if template.tail is not None:
                        value = path[len(template.prefix) :]
                        if value and "\n" not in value:
                            if "%" in value:
                                value = _decoded(value)
                            request.path_values = {template.tail: value}
                            methods = template.methods
                            break
                        continue
                    match = template.pattern.fullmatch(path)
                    if match is not None:
                        request.path_values = {k: _decoded(v) for k, v in match.groupdict().items()}
                        methods = template.methods
                        break
            else:
                return self.not_found
        target = methods.get(request.method)
        return self.not_allowed if target is None else target


def request_factory(
    loop: asyncio.AbstractEventLoop, client_max_size: int
) -> Callable[..., web.Request]:
    """An ApiRequest for each message, with the body cap an Application would give it."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.Request:
        return ApiRequest(
            message, payload, protocol, writer, task, loop, client_max_size=client_max_size
        )

    return make
