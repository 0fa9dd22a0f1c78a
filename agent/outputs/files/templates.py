"""Templates: jinja2 in an immutable sandbox with limits (see sandbox.py), undefined names are
errors, no autoescaping.

The source is read again at every render (jinja's cache is off), so an edited template applies
at the next write of the set. Includes and imports are resolved next to the source file only.

A render stops at `files.template_timeout`, at `files.template_max_bytes` of output (or of any
value on the way), or at once when the renderer is cancelled (the agent stopping).

Error messages never hold a value: a failed render is reported as the exception's type, the line
in the template, and a fixed description chosen by that type. The exception's own text is never
used, since it may quote anything the template computed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError

from agent.keys import env_name
from agent.outputs.files.sandbox import GuardedEnvironment, RenderLimitError, RenderLimits
from agent.snapshot import Snapshot

__all__ = ["RenderLimits", "TemplateError", "TemplateRenderer", "template_context"]

# (exception type, what is said about it), most specific first.
_DESCRIPTIONS: tuple[tuple[type[BaseException], str], ...] = (
    (UndefinedError, "undefined name, attribute or key"),
    (SecurityError, "not allowed in the sandbox"),
    (TemplateNotFound, "an included or imported template was not found"),
    (TemplateRuntimeError, "the template could not go on"),
    (ZeroDivisionError, "division by zero"),
    (OverflowError, "a number out of range"),
    (RecursionError, "recursion too deep"),
    (MemoryError, "out of memory"),
    (TypeError, "an operation got a value of the wrong type"),
    (LookupError, "a key or index that is not there"),
    (ValueError, "an operation got an unusable value"),
    (AttributeError, "an attribute that is not there"),
    (ArithmeticError, "an arithmetic error"),
)


class TemplateError(Exception):
    """A template could not be rendered. The message is safe to log (it holds no value)."""


def template_context(snapshot: Snapshot) -> dict[str, Any]:
    """What a template sees.

    params      key -> value        ({{ params["db/url"] }}, {{ params.db_password }})
    env         ENV_NAME -> value   ({{ env.DB_URL }}); names two keys share are left out
    parameters  full name -> value  ({{ parameters["/myapp/prod/db/url"] }})
    secrets     key -> a JSON secret's fields, else its value ({{ secrets.db.password }})

    Secrets Manager secrets are in params and env too, under their keys (their value as text).
    """
    params = snapshot.values_by_key()
    owners: dict[str, list[str]] = {}
    for key in params:
        owners.setdefault(env_name(key), []).append(key)
    env = {name: params[keys[0]] for name, keys in owners.items() if len(keys) == 1}
    return {
        "params": params,
        "env": env,
        "parameters": {p.name: p.value for p in snapshot},
        "secrets": {s.key: s.fields() or s.text for s in snapshot.secrets.values()},
    }


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    """The last line of the template that the (jinja-rewritten) traceback passes through."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe(exc: BaseException) -> str:
    """A fixed description of what went wrong: chosen by type, never the exception's text."""
    for kind, description in _DESCRIPTIONS:
        if isinstance(exc, kind):
            return description
    return "an error"


class TemplateRenderer:
    def __init__(self, source: Path, limits: RenderLimits | None = None) -> None:
        self.source = source
        self.limits = limits or RenderLimits()
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._env = GuardedEnvironment(
            self.limits,
            loader=FileSystemLoader(str(source.parent)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            cache_size=0,
        )

    def cancel(self) -> None:
        """End a render in progress at its next step, and every later one at once."""
        self._cancelled.set()

    def compile(self) -> Template:
        """The parsed template; raises TemplateError (missing, unreadable, bad syntax)."""
        try:
            return self._env.get_template(self.source.name)
        except TemplateNotFound:
            raise TemplateError(f"source {self.source} not found") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error at line {exc.lineno}: {exc.message}") from None
        except UnicodeDecodeError:
            raise TemplateError(f"source {self.source} is not UTF-8 text") from None
        except OSError as exc:
            raise TemplateError(f"source {self.source} cannot be read: {exc.strerror}") from None

    def render(self, context: Mapping[str, Any]) -> bytes:
        """The rendered bytes (UTF-8); raises TemplateError with a message safe to log."""
        with self._lock:  # one render at a time: the budget lives on the environment
            template = self.compile()
            budget = self._env.start_render(self._cancelled)
            try:
                text = self._generate(template, context, budget.limits.max_bytes)
            finally:
                self._env.end_render()
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise TemplateError("output is not valid UTF-8") from None
        if len(data) > self.limits.max_bytes:
            raise TemplateError(self._too_large())
        return data

    def _generate(self, template: Template, context: Mapping[str, Any], max_chars: int) -> str:
        chunks: list[str] = []
        size = 0
        try:
            for chunk in template.generate(context):
                self._env.budget.tick()
                size += len(chunk)
                if size > max_chars:
                    raise TemplateError(self._too_large())
                chunks.append(chunk)
        except TemplateError:
            raise
        except TemplateSyntaxError as exc:  # an included template that does not parse
            raise TemplateError(
                f"syntax error in an included template at line {exc.lineno}: {exc.message}"
            ) from None
        except RenderLimitError as exc:
            raise TemplateError(f"limit reached{self._where(exc, template)}: {exc}") from None
        except Exception as exc:
            raise TemplateError(
                f"{type(exc).__name__}{self._where(exc, template)}: {describe(exc)}"
            ) from None
        return "".join(chunks)

    def _too_large(self) -> str:
        return (
            "limit reached: output larger than files.template_max_bytes "
            f"({self.limits.max_bytes} bytes)"
        )

    @staticmethod
    def _where(exc: BaseException, template: Template) -> str:
        line = _template_line(exc.__traceback__, template.filename or "")
        return f" at line {line}" if line is not None else ""
