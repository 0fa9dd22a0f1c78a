"""Trimmed botocore data: only the operations the agent calls (memory, issue #15).

botocore parses a service's whole model when a client is created: SSM's is ~3.4 MiB of Python
objects for ~140 operations, and the endpoints file another ~6.7 MiB for every service AWS has.
botocore's Loader searches extra data paths before its own data, so `botocore_data/` beside this
module holds the same files cut down to what the agent uses (its operations, the shapes they
reach, no documentation; the endpoints of its services only). They are generated from the
installed botocore by `python -m agent.sources.botocore_models` (scripts/trim-botocore-data),
and tests/unit/test_botocore_models.py fails when they no longer match the installed botocore
or when the agent calls an operation they lack.

`use_trimmed_models(session)` puts the directory after the user's own data paths
(`AWS_DATA_PATH`) and `~/.aws/models`, and before botocore's data, so a user's model still wins.
Without the directory (an install that left package data out) botocore's full data is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).with_name("botocore_data")

#: Every operation the agent calls, by service (the sources, on-demand reads, role_arn).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "ssm": ("GetParameter", "GetParameters", "GetParametersByPath"),
    "secretsmanager": ("BatchGetSecretValue", "DescribeSecret", "GetSecretValue", "ListSecrets"),
    "sts": ("AssumeRole",),
}
_DROPPED_KEYS = frozenset({"documentation", "documentationUrl", "examples"})


def use_trimmed_models(session: Any) -> bool:
    """Let `session`'s loader find the trimmed data (before botocore's); False without it."""
    if not (DATA_DIR / "endpoints.json").is_file():
        return False
    loader = session.get_component("data_loader")
    paths: list[str] = loader.search_paths
    if str(DATA_DIR) in paths:
        return True
    builtin = getattr(loader, "BUILTIN_DATA_PATH", None)
    paths.insert(paths.index(builtin) if builtin in paths else len(paths), str(DATA_DIR))
    return True


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _DROPPED_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _shape_refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("shape"), str):
            found.append(node["shape"])
        for v in node.values():
            found += _shape_refs(v)
    elif isinstance(node, list):
        for v in node:
            found += _shape_refs(v)
    return found


def trim_service(model: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """`model` with only `operations` and the shapes they reach, documentation dropped."""
    ops = {name: _strip(model["operations"][name]) for name in operations}
    shapes: dict[str, Any] = {}
    todo = _shape_refs(ops)
    while todo:
        name = todo.pop()
        if name not in shapes:
            shapes[name] = _strip(model["shapes"][name])
            todo += _shape_refs(shapes[name])
    trimmed = {k: v for k, v in model.items() if k not in ("operations", "shapes", "documentation")}
    trimmed["operations"] = ops
    trimmed["shapes"] = dict(sorted(shapes.items()))
    return trimmed


def trim_endpoints(endpoints: dict[str, Any], services: list[str]) -> dict[str, Any]:
    partitions = [
        {**p, "services": {s: p["services"][s] for s in services if s in p.get("services", {})}}
        for p in endpoints["partitions"]
    ]
    return {**endpoints, "partitions": partitions}


def generate() -> dict[str, str]:
    """The trimmed files from the installed botocore: {relative path: JSON text}."""
    from botocore.loaders import Loader

    builtin = [Loader.BUILTIN_DATA_PATH]
    loader = Loader(include_default_search_paths=False, extra_search_paths=builtin)
    files: dict[str, str] = {}
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_service_model(service, "service-2", version)
        trimmed = trim_service(model, operations)
        files[f"{service}/{version}/service-2.json"] = _dump(trimmed)
    endpoints = trim_endpoints(loader.load_data("endpoints"), sorted(OPERATIONS))
    files["endpoints.json"] = _dump(endpoints)
    return files


def _dump(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def write(into: Path = DATA_DIR) -> list[Path]:
    written = []
    for relative, text in generate().items():
        path = into / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write():
        print(p.relative_to(DATA_DIR.parent), p.stat().st_size, "bytes", file=sys.stderr)
