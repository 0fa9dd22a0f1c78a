"""Keys: a name's key relative to its path entry, and the environment variable name of a key."""

from __future__ import annotations

import pytest

from agent.keys import env_name, env_names, key_under


def test_keys_relative_to_path() -> None:
    assert key_under("/myapp/prod", "/myapp/prod/db/url") == "db/url"
    assert key_under("/myapp/prod/", "/myapp/prod/x") == "x"
    assert key_under("/", "/a/b") == "a/b"


def test_env_names_follow_the_design() -> None:
    assert env_name("db/url") == "DB_URL"
    assert env_name("api-key.v2") == "API_KEY_V2"
    assert env_names(["db/url", "db/password"]) == {
        "DB_URL": "db/url",
        "DB_PASSWORD": "db/password",
    }
    with pytest.raises(ValueError, match="'db/url' and 'db-url' both become DB_URL"):
        env_names(["db/url", "db-url"])
