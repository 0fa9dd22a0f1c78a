"""No name, alias, bundle or template path can make the files output write outside files.dir."""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import FilesConfig
from agent.keys import key_under
from agent.metrics import Metrics
from agent.outputs.files.atomic_writer import path_problem
from agent.outputs.files.output import FilesOutput
from agent.snapshot import Change, Parameter, Snapshot

TRICKY_SEGMENTS = [
    "",
    ".",
    "..",
    "...",
    "..data",
    "..data_tmp",
    "..link_tmp",
    "..2020_01_01_00_00_00.000000000",
    "a",
    "b",
    "db",
    "~",
    "-",
    " ",
    "\\",
    "\x00",
    "é",
    "*",
    "$HOME",
    "\n",
    "x" * 256,
]

segments = st.one_of(st.sampled_from(TRICKY_SEGMENTS), st.text(max_size=4))
raw_paths = st.builds(
    lambda lead, parts, trail: ("/" if lead else "") + "/".join(parts) + ("/" if trail else ""),
    st.booleans(),
    st.lists(segments, max_size=4),
    st.booleans(),
)
# How a key comes to be: an alias as written, a name's own path, or a name under a path entry.
key_kinds = st.sampled_from(["alias", "name", "under_path"])


def _key(kind: str, raw: str) -> tuple[str, str]:
    """(parameter name, key) the way config and sources derive them."""
    if kind == "alias":
        return "/aliased/" + str(abs(hash(raw))), raw
    if kind == "name":
        name = "/" + raw.lstrip("/")
        return name, name.lstrip("/")
    name = "/app/" + raw
    return name, key_under("/app", name)


def _params(entries: list[tuple[str, str, str]]) -> dict[str, Parameter]:
    out: dict[str, Parameter] = {}
    for kind, raw, value in entries:
        name, key = _key(kind, raw)
        out[name] = Parameter(
            name=name,
            key=key,
            type="String",
            value=value,
            version=1,
            last_modified=datetime(2026, 1, 1, tzinfo=UTC),
        )
    return out


def _outside_listing(root: Path, files_dir: Path) -> dict[str, bytes | None]:
    """Everything under root except files.dir's subtree: path -> file bytes (None for dirs)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != files_dir]
        for d in dirnames:
            out[str((here / d).relative_to(root))] = None
        for f in filenames:
            path = here / f
            out[str(path.relative_to(root))] = (
                path.read_bytes() if not path.is_symlink() else os.readlink(path).encode()
            )
    return out


def _check_inside(files_dir: Path) -> None:
    real_root = os.path.realpath(files_dir)
    for dirpath, dirnames, filenames in os.walk(files_dir):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            real = os.path.realpath(path)
            assert real == real_root or real.startswith(real_root + os.sep), (path, real)


entries = st.lists(
    st.tuples(key_kinds, raw_paths, st.text(max_size=8)), max_size=8, unique_by=lambda e: e[:2]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    first=entries,
    second=entries,
    bundle_paths=st.lists(raw_paths, max_size=2),
    template_paths=st.lists(raw_paths, max_size=2),
)
def test_nothing_is_ever_written_outside_files_dir(
    first: list[tuple[str, str, str]],
    second: list[tuple[str, str, str]],
    bundle_paths: list[str],
    template_paths: list[str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        files_dir = root / "out" / "params"
        (root / "sibling").mkdir(parents=True)
        (root / "sibling" / "keep").write_bytes(b"sibling")
        (root / "sentinel").write_bytes(b"sentinel")
        template = Path(tmp) / "t.j2"
        template.write_text("T")
        cfg = FilesConfig.model_validate(
            {
                "dir": files_dir,
                "bundle": [{"path": p, "prefix": "/"} for p in bundle_paths],
                "template": [{"source": template, "path": p} for p in template_paths],
            }
        )
        output = FilesOutput(cfg, Metrics())
        before = _outside_listing(root, files_dir)
        previous = Snapshot()
        for generation, batch in enumerate([first, second], start=1):
            snapshot = Snapshot.build(_params(batch), generation)
            change: Change = previous.diff(snapshot)
            asyncio.run(output.publish(snapshot, change, generation == 1))
            previous = snapshot

            assert _outside_listing(root, files_dir) == {**before, "out": None}
            _check_inside(files_dir)
            for p in snapshot:
                target = files_dir / p.key if path_problem(p.key) is None else None
                written = target is not None and target.is_file()
                if written:
                    assert target is not None and target.read_bytes() == p.value.encode()
                else:
                    # Not written: it must have been refused, and said so.
                    assert any(p.name in problem for problem in output.problems), p.key


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
