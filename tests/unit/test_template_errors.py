"""A template's error message cannot carry a value: it is a fixed description chosen by the
exception's type, with the template line, and never the text of the exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.outputs.files.templates import TemplateError, TemplateRenderer, template_context
from tests.support.builders import parameter, snapshot

# Quotes of both kinds, a backslash and a newline: repr() of it differs from the value, and a
# quoted-token filter over the message text cuts it in the wrong places.
TRICKY = 'it\'s "secret-part" \\ and\nmore-secret'


def _context() -> dict[str, object]:
    return template_context(snapshot(parameter("/app/tricky", TRICKY, type="SecureString")))


def _message(tmp_path: Path, text: str) -> str:
    source = tmp_path / "t.j2"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError) as err:
        TemplateRenderer(source).render(_context())
    return str(err.value)


@pytest.mark.parametrize("key", ["params.tricky", "params.tricky|upper", "params.tricky[5:]"])
def test_a_type_error_that_quotes_a_value_does_not_show_it(tmp_path: Path, key: str) -> None:
    # str.split(**{k: 1}) raises TypeError("'<k>' is an invalid keyword argument for split()"),
    # k being the value itself, or a piece of it, or the value changed by a filter.
    message = _message(tmp_path, f'line one\n{{{{ "a".split(**{{{key}: 1}}) }}}}\n')
    assert message == "TypeError at line 2: an operation got a value of the wrong type"
    assert "secret" not in message.lower()


UNDEFINED = "UndefinedError at line 1: undefined name, attribute or key"
SANDBOX = "SecurityError at line 1: not allowed in the sandbox"
NOT_FOUND = "TemplateNotFound at line 1: an included or imported template was not found"
CASES = [
    ("{{ params.nope }}", UNDEFINED),
    ("{{ params[params.tricky] }}", UNDEFINED),
    ("{{ ''.__class__ }}", SANDBOX),
    ("{{ params.update({}) }}", SANDBOX),
    ("{{ 1 / 0 }}", "ZeroDivisionError at line 1: division by zero"),
    (
        '{{ params.tricky.index("zzz") }}',
        "ValueError at line 1: an operation got an unusable value",
    ),
    ("{{ {}.pop(params.tricky) }}", SANDBOX),
    ("{{ [1][params.tricky|length] }}", UNDEFINED),
    ("{% include params.tricky %}", NOT_FOUND),
    ('{% include "nope.j2" %}', NOT_FOUND),
    ("{{ params.tricky + 1 }}", "TypeError at line 1: an operation got a value of the wrong type"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_runtime_error_is_a_fixed_description(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = _message(tmp_path, text)
    assert message == expected
    assert "secret" not in message


def test_syntax_errors_still_say_what_is_wrong(tmp_path: Path) -> None:
    # The parser sees the template text only, never a value.
    message = _message(tmp_path, "ok\n{% if %}\n")
    assert message.startswith("syntax error at line 2: ")
