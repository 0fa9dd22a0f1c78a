"""No name, alias, bundle or template path can make the files output write outside files.dir,
and each path goes to the entry FilesOutput promises it to."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.config import FilesConfig
from agent.keys import key_under
from agent.metrics import Metrics
from agent.outputs.files.atomic_writer import path_problem
from agent.outputs.files.output import FilesOutput
from agent.snapshot import Change, Snapshot
from tests.support.builders import parameter, snapshot

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
        # A stable digest (hash() differs per process): a failing example replays as it was.
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return f"/aliased/{digest}", raw
    if kind == "name":
        name = "/" + raw.lstrip("/")
        return name, name.lstrip("/")
    name = "/app/" + raw
    return name, key_under("/app", name)


def _snapshot_of(entries: list[tuple[str, str, str]], generation: int) -> Snapshot:
    params = []
    for kind, raw, value in entries:
        name, key = _key(kind, raw)
        params.append(parameter(name, value, key=key))
    return snapshot(*params, generation=generation)


def _placed(
    snapshot: Snapshot, bundles: Iterable[str], templates: Iterable[str], written: set[str]
) -> dict[str, str]:
    """path -> who gets it ("bundle", "template" or a parameter's name), as docs/files.md
    ("Paths that are refused") says: bundles first, then templates, then parameters (keys
    already written first, then by key); a path goes to the first entry that asks for it, if
    it is safe and is neither the path of an entry placed before, nor a directory holding one,
    nor inside one."""
    placed: dict[str, str] = {}

    def place(path: str, owner: str) -> None:
        clashes = any(
            path == other or other.startswith(path + "/") or path.startswith(other + "/")
            for other in placed
        )
        if path_problem(path) is None and not clashes:
            placed[path] = owner

    for path in bundles:
        place(path, "bundle")
    for path in templates:
        place(path, "template")
    for p in sorted(snapshot, key=lambda p: (p.key not in written, p.key)):
        place(p.key, p.name)
    return placed


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
# A template takes a parameter's key: the template keeps the path, the parameter is refused.
@example(first=[("alias", "a", "value")], second=[], bundle_paths=[], template_paths=["a"])
# Two parameters with one key: the first by name gets it, the other is refused.
@example(
    first=[("alias", "a", "x"), ("name", "a", "y")], second=[], bundle_paths=[], template_paths=[]
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
        previous, written = Snapshot(), set[str]()
        for generation, batch in enumerate([first, second], start=1):
            snapshot = _snapshot_of(batch, generation)
            change: Change = previous.diff(snapshot)
            asyncio.run(output.publish(snapshot, change, generation == 1))
            previous = snapshot
            placed = _placed(snapshot, bundle_paths, template_paths, written)
            written = set(placed)

            assert _outside_listing(root, files_dir) == {**before, "out": None}
            _check_inside(files_dir)
            for p in snapshot:
                if placed.get(p.key) == p.name:
                    assert (files_dir / p.key).read_bytes() == p.value.encode()
                else:
                    # Not written: it must have been refused, and said so.
                    said = f"parameter {p.name}: "
                    assert any(problem.startswith(said) for problem in output.problems), p.key
            for path, owner in placed.items():
                if owner == "template":
                    assert (files_dir / path).read_bytes() == b"T"
