"""The API token file: created once with mode 0440, read back, refused when unusable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.outputs.http.token import TokenCheck, TokenError, load_or_create_token


def test_created_with_a_random_token_mode_0440_in_a_0750_dir(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ssm-sidecar" / "token"
    token = load_or_create_token(path)
    assert len(token) >= 40
    assert path.read_text() == token
    assert path.stat().st_mode & 0o777 == 0o440
    assert path.parent.stat().st_mode & 0o777 == 0o750
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temp file left
    assert load_or_create_token(tmp_path / "other") != token


def test_an_existing_token_is_used_as_is(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("operator-chosen-token\n")
    assert load_or_create_token(path) == "operator-chosen-token"
    assert path.read_text() == "operator-chosen-token\n"


def test_an_empty_token_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(" \n")
    with pytest.raises(TokenError, match="empty"):
        load_or_create_token(path)


def test_a_parent_that_is_a_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(TokenError, match="Not a directory") as err:
        load_or_create_token(tmp_path / "run" / "token")
    assert str(tmp_path / "run" / "token") in str(err.value)


def test_a_directory_in_the_way_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "token").mkdir()
    with pytest.raises(TokenError, match="token"):
        load_or_create_token(tmp_path / "token")


def test_token_check() -> None:
    check = TokenCheck("abc123")
    assert check.matches("abc123")
    assert not check.matches("abc1234")
    assert not check.matches("")
    assert not check.matches("äbc123")
