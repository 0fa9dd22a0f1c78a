"""Templates: sandboxed, strict about undefined names, no autoescaping, no value in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.outputs.files.templates import TemplateError, TemplateRenderer, template_context
from tests.support.builders import parameter, snapshot

SECRET = "s3cr3t-<&>\"'-value"


def _context() -> dict[str, object]:
    snap = snapshot(
        parameter("/app/db/url", "pg://db", key="db/url"),
        parameter("/app/db/password", SECRET, key="db/password"),
        parameter("/app/flag", "db/url", key="flag"),
    )
    return template_context(snap)


def _renderer(tmp_path: Path, text: str, name: str = "t.j2") -> TemplateRenderer:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    return TemplateRenderer(source)


def test_context_offers_params_env_and_parameters(tmp_path: Path) -> None:
    r = _renderer(
        tmp_path,
        '{{ params["db/url"] }}|{{ env.DB_PASSWORD }}|{{ parameters["/app/db/url"] }}\n',
    )
    assert r.render(_context()) == f"pg://db|{SECRET}|pg://db\n".encode()


def test_no_autoescape_and_trailing_newline_kept(tmp_path: Path) -> None:
    r = _renderer(tmp_path, "pw={{ env.DB_PASSWORD }}\n\n")
    assert r.render(_context()) == f"pw={SECRET}\n\n".encode()


def test_env_leaves_out_names_that_two_keys_share() -> None:
    snap = snapshot(
        parameter("/a/x-y", "1", key="x-y"),
        parameter("/a/x_y", "2", key="x_y"),
        parameter("/a/z", "3", key="z"),
    )
    ctx = template_context(snap)
    assert ctx["env"] == {"Z": "3"}
    assert ctx["params"] == {"x-y": "1", "x_y": "2", "z": "3"}


def test_undefined_name_is_an_error_with_its_line(tmp_path: Path) -> None:
    r = _renderer(tmp_path, 'a\nb={{ params["db/missing"] }}\n')
    with pytest.raises(TemplateError) as err:
        r.render(_context())
    message = str(err.value)
    assert message == "UndefinedError at line 2: undefined name, attribute or key"


def test_undefined_top_level_name_is_an_error(tmp_path: Path) -> None:
    r = _renderer(tmp_path, "{{ nothing_here }}")
    with pytest.raises(TemplateError, match="UndefinedError at line 1: undefined name"):
        r.render(_context())


def test_an_undefined_name_made_of_a_value_is_not_echoed(tmp_path: Path) -> None:
    # params[params.flag] looks up "db/url": fine. params[env.DB_PASSWORD] looks up the secret.
    r = _renderer(tmp_path, "{{ params[env.DB_PASSWORD] }}")
    with pytest.raises(TemplateError) as err:
        r.render(_context())
    assert SECRET not in str(err.value)
    assert "s3cr3t" not in str(err.value)
    assert "UndefinedError" in str(err.value)


def test_a_value_that_is_also_a_word_of_the_template_is_not_echoed(tmp_path: Path) -> None:
    # The value of flag is "db/url", which the template also spells: still elided.
    r = _renderer(tmp_path, '{{ params["db/url"] }} {{ env[params.flag] }}')
    with pytest.raises(TemplateError) as err:
        r.render(_context())
    assert "'db/url'" not in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ params.__class__ }}",
        "{{ params.update({'x': 1}) }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_unsafe_access_and_mutation(tmp_path: Path, text: str) -> None:
    r = _renderer(tmp_path, text)
    with pytest.raises(TemplateError, match=r"SecurityError|UndefinedError"):
        r.render(_context())


def test_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    r = _renderer(tmp_path, "ok\n{% if %}\n")
    with pytest.raises(TemplateError, match="syntax error at line 2"):
        r.render(_context())


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    r = TemplateRenderer(tmp_path / "absent.j2")
    with pytest.raises(TemplateError, match="not found"):
        r.render(_context())


def test_source_is_read_again_at_each_render(tmp_path: Path) -> None:
    r = _renderer(tmp_path, "v1")
    assert r.render(_context()) == b"v1"
    (tmp_path / "t.j2").write_text("v2 {{ params.flag }}")
    assert r.render(_context()) == b"v2 db/url"


def test_includes_resolve_next_to_the_source_only(tmp_path: Path) -> None:
    (tmp_path / "part.j2").write_text("[{{ params['db/url'] }}]")
    r = _renderer(tmp_path, '{% include "part.j2" %}')
    assert r.render(_context()) == b"[pg://db]"
    outside = _renderer(tmp_path, '{% include "../etc/passwd" %}', name="escape.j2")
    with pytest.raises(TemplateError):
        outside.render(_context())


@pytest.mark.parametrize(
    "text",
    [
        "{{ params[env.DB_PASSWORD] }}",
        "{{ params[env.DB_PASSWORD|upper] }}",
        "{{ env[params.flag] }}",
        "{% include env.DB_PASSWORD %}",
        "{% include env.DB_PASSWORD|upper %}",
        "{{ ('{' ~ env.DB_PASSWORD ~ '}').format() }}",
        "{{ ('{' ~ env.DB_PASSWORD|upper ~ '}').format() }}",
        "{{ 1 + env.DB_PASSWORD }}",
        "{{ env.DB_PASSWORD.__class__ }}",
    ],
)
def test_error_messages_never_hold_a_value_even_a_transformed_one(
    tmp_path: Path, text: str
) -> None:
    r = _renderer(tmp_path, text)
    with pytest.raises(TemplateError) as err:
        r.render(_context())
    message = str(err.value).lower()
    assert "s3cr3t" not in message and "value'" not in message
    assert "'db/url'" not in message


def test_errors_are_fixed_descriptions_with_their_line(tmp_path: Path) -> None:
    r = _renderer(tmp_path, "{{ 1 + params.flag }}")
    with pytest.raises(TemplateError, match=r"TypeError at line 1: .* wrong type$"):
        r.render(_context())
    r = _renderer(tmp_path, '{% include "nope.j2" %}')
    with pytest.raises(TemplateError, match=r"TemplateNotFound at line 1: .* not found$"):
        r.render(_context())
