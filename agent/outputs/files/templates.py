"""Templates: jinja2 in an immutable sandbox, undefined names are errors, no autoescaping.

The source is read again at every render (jinja's cache is off), so an edited template applies
at the next write of the set. Includes and imports are resolved next to the source file only.

Error messages never hold a value: a failed render is reported as the exception type, the line
in the template, and only those parts of the message that the template spells itself (see
`safe_message`), so `params[params.x]` cannot echo the value of x as an "undefined name".
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agent.keys import env_name
from agent.snapshot import Snapshot

_QUOTED = re.compile(r"'([^']*)'")
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]* object")
# The shapes of jinja's undefined messages; the name is a Python repr.
_UNDEFINED = (
    re.compile(r"(?P<name>'.*'|\".*\") is undefined", re.DOTALL),
    re.compile(r"'[\w.]+ object' has no attribute (?P<name>'.*'|\".*\")", re.DOTALL),
    re.compile(r"[\w.]+ object has no element (?P<name>.+)", re.DOTALL),
)
_MIN_CUT = 3


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


def _is_template_word(token: str, source_text: str, values: Collection[str]) -> bool:
    """A name the template spells itself (and not a current value): safe to show."""
    if not token or token in values:
        return False
    return re.search(r"(?<![\w])" + re.escape(token) + r"(?![\w])", source_text) is not None


def _is_type_name(quoted: str) -> bool:
    """'str object', 'int', 'NoneType': how Python and jinja name types in their messages."""
    if _TYPE_NAME.fullmatch(quoted):
        return True
    return quoted == "NoneType" or isinstance(getattr(builtins, quoted, None), type)


def _undefined_message(text: str, source_text: str, values: Collection[str]) -> str:
    """jinja's UndefinedError text, its name elided unless the template spells it."""
    match = next((m for m in (r.fullmatch(text) for r in _UNDEFINED) if m is not None), None)
    if match is None:
        return "a value is undefined"
    try:
        name = ast.literal_eval(match.group("name"))
    except (ValueError, SyntaxError):
        name = None
    if isinstance(name, int) or (
        isinstance(name, str) and _is_template_word(name, source_text, values)
    ):
        return text
    return text[: match.start("name")] + "'…'" + text[match.end("name") :]


def safe_message(exc: BaseException, source_text: str, values: Collection[str]) -> str:
    """The exception's message with nothing in it that could be a value.

    Undefined names and missing includes are shown only when the template spells them itself.
    Sandbox and type errors quote names and types: current values are cut out, then every
    quoted token that is neither a type name nor a word of the template text becomes '…'.
    Other messages are withheld.
    """
    text = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    if isinstance(exc, UndefinedError):
        return _undefined_message(text, source_text, values)
    if isinstance(exc, TemplateNotFound):
        name = exc.name if isinstance(exc.name, str) else ""
        if _is_template_word(name, source_text, values):
            return f"{name!r} not found"
        return "an included template was not found"
    if not isinstance(exc, SecurityError | TypeError):
        # Free-form messages (KeyError, ValueError, ...) may quote anything: show none of it.
        return "(message withheld)"
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= _MIN_CUT and value in text:
            text = text.replace(value, "…")

    def keep_or_elide(match: re.Match[str]) -> str:
        token = match.group(1)
        if _is_type_name(token) or _is_template_word(token, source_text, values):
            return match.group(0)
        return "'…'"

    return _QUOTED.sub(keep_or_elide, text)


def _values(context: Mapping[str, Any]) -> set[str]:
    """Every value a template can reach (a JSON secret's fields too)."""
    found: set[str] = set()
    tables = [t for t in context.values() if isinstance(t, Mapping)]
    while tables:
        for v in tables.pop().values():
            if isinstance(v, str):
                found.add(v)
            elif isinstance(v, Mapping):
                tables.append(v)
    return found


class TemplateRenderer:
    def __init__(self, source: Path) -> None:
        self.source = source
        self._env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(source.parent)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            cache_size=0,
        )

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
        template = self.compile()
        try:
            text = template.render(context)
        except TemplateSyntaxError as exc:  # an included template that does not parse
            raise TemplateError(
                f"syntax error in {exc.name or '?'} at line {exc.lineno}: {exc.message}"
            ) from None
        except Exception as exc:
            source_text = self._source_text()
            line = _template_line(exc.__traceback__, template.filename or "")
            where = f" at line {line}" if line is not None else ""
            raise TemplateError(
                f"{type(exc).__name__}{where}: {safe_message(exc, source_text, _values(context))}"
            ) from None
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise TemplateError("output is not valid UTF-8") from None

    def _source_text(self) -> str:
        try:
            return self.source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""
