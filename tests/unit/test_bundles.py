"""Bundles: dotenv quoting that python-dotenv reads back exactly, JSON, env-name clashes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.outputs.files.bundles import (
    BundleError,
    bundle_pairs,
    quote_dotenv,
    render_bundle,
    render_dotenv,
    render_json,
)
from tests.support.builders import parameter, snapshot

NASTY = {
    "QUOTES": "say \"hi\" and 'bye'",
    "NEWLINES": "line1\nline2\r\nline3\r",
    "DOLLARS": "$HOME ${HOME} $$ ${HOME:-x} $",
    "HASHES": "#not-a-comment # still value #",
    "BACKSLASHES": 'C:\\path\\n\\t\\\\ \\" \\$ end\\',
    "SPACES": "  leading and trailing  ",
    "EMPTY": "",
    "UNICODE": "päss wörd ✓ \u2028 \u0085 \t tab",
    "EQUALS": "a=b=c",
    "EXPORT_LIKE": "export X=1",
}


def _parse(text: str, interpolate: bool = False) -> dict[str, str | None]:
    return dict(dotenv_values(stream=io.StringIO(text), interpolate=interpolate))


def test_dotenv_with_quotes_newlines_dollars_and_hashes_parses_back_exactly() -> None:
    text = render_dotenv(NASTY)
    assert _parse(text) == NASTY


def test_dotenv_parses_back_exactly_from_a_file_read_in_text_mode(tmp_path: Path) -> None:
    # A real file goes through universal newlines: a raw \r would come back as \n.
    path = tmp_path / "app.env"
    path.write_bytes(render_dotenv(NASTY).encode("utf-8"))
    assert dict(dotenv_values(path, interpolate=False)) == NASTY


def test_dotenv_is_one_line_per_variable_sorted_and_double_quoted() -> None:
    text = render_dotenv({"B": "two\nlines", "A": 'q"'})
    assert text == 'A="q\\""\nB="two\\nlines"\n'


def test_dollar_is_kept_verbatim_and_only_brace_expansion_needs_interpolation_off() -> None:
    values = {"PLAIN": "cost $5 and $HOME", "BRACES": "${HOME}"}
    text = render_dotenv(values)
    assert _parse(text, interpolate=True)["PLAIN"] == values["PLAIN"]
    assert _parse(text, interpolate=False) == values


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True), st.text()))
def test_any_value_round_trips_through_python_dotenv(values: dict[str, str]) -> None:
    assert _parse(render_dotenv(values)) == values


@given(st.text())
def test_quoted_value_has_no_raw_line_break_or_unescaped_quote(value: str) -> None:
    quoted = quote_dotenv(value)
    inner = quoted[1:-1]
    assert quoted[0] == quoted[-1] == '"'
    assert "\n" not in inner and "\r" not in inner
    # Every quote inside is preceded by an odd run of backslashes (escaped).
    for i, ch in enumerate(inner):
        if ch == '"':
            run = len(inner[:i]) - len(inner[:i].rstrip("\\"))
            assert run % 2 == 1


@pytest.mark.parametrize("name", ["", "A B", "A=B", "A#", "Ä", "A\nB"])
def test_render_dotenv_refuses_names_that_are_not_env_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a dotenv variable name"):
        render_dotenv({name: "v"})


def test_json_is_one_object_of_names_to_values_sorted() -> None:
    text = render_json({"B": "2", "A": 'x"\n✓'})
    assert json.loads(text) == {"A": 'x"\n✓', "B": "2"}
    assert list(json.loads(text)) == ["A", "B"]
    assert "✓" in text and text.endswith("}\n")


def test_bundle_holds_the_parameters_under_its_prefix_by_normalized_key() -> None:
    snap = snapshot(
        parameter("/myapp/prod/db/url", "pg://db", key="db/url"),
        parameter("/myapp/prod/db/password", "pw", key="db/password"),
        parameter("/myapp/prod/api-key", "k", key="api-key"),
        parameter("/myapp/prod/dbx", "not under the prefix", key="dbx"),
    )
    assert bundle_pairs(snap, "/myapp/prod/db") == {"DB_URL": "pg://db", "DB_PASSWORD": "pw"}
    assert set(bundle_pairs(snap, "/")) == {"DB_URL", "DB_PASSWORD", "API_KEY", "DBX"}
    assert json.loads(render_bundle(snap, "/myapp/prod/db", "json")) == {
        "DB_PASSWORD": "pw",
        "DB_URL": "pg://db",
    }


def test_bundle_clash_names_both_keys_and_no_value() -> None:
    snap = snapshot(
        parameter("/app/db-url", "secret-one", key="db-url"),
        parameter("/app/db_url", "secret-two", key="db_url"),
    )
    with pytest.raises(BundleError) as err:
        render_bundle(snap, "/app", "dotenv")
    message = str(err.value)
    assert "'db-url'" in message and "'db_url'" in message and "DB_URL" in message
    assert "secret" not in message


def test_a_key_with_no_usable_variable_name_fails_the_bundle_not_the_agent() -> None:
    snap = snapshot(parameter("/app/", "v", key=""), parameter("/app/ok", "w", key="ok"))
    with pytest.raises(BundleError, match="no usable variable name"):
        render_bundle(snap, "/", "dotenv")
