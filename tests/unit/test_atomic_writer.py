"""path_problem: which paths the atomic writer may write under its directory, and why not."""

from __future__ import annotations

import pytest

from agent.outputs.files.atomic_writer import path_problem


@pytest.mark.parametrize(
    "path",
    ["a", "a/b", "db/url", "a/...", "a/..b", ".hidden", "é/✓", "a b/c", "a\\b", "x" * 255],
)
def test_safe_paths(path: str) -> None:
    assert path_problem(path) is None


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/a",
        "a/../b",
        "..",
        ".",
        "./a",
        "a/.",
        "a//b",
        "a/",
        "..data",
        "..x/y",
        "a\x00b",
        "x" * 256,
        "a/" * 1100,
        "\udc80",
    ],
)
def test_unsafe_paths(path: str) -> None:
    assert path_problem(path) is not None
