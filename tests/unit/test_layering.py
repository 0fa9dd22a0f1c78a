"""The house plan's one-way data flow, checked on the source: no module imports one above it.

Layers, lowest first (docs/architecture.md shows the same table). A module may import its own
layer or lower ones, except where `FORBIDDEN` says otherwise; sources and outputs share a layer
but know nothing of each other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "agent"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("agent.durations", "agent.keys", "agent.snapshot", "agent.results"),
    (
        "agent.config",
        "agent.logs",
        "agent.metrics",
        "agent.children",
        "agent.state",
        "agent.tasks",
        "agent.removals",
        "agent.dirwatch",
        "agent.lean",
    ),
    ("agent.sources", "agent.outputs"),
    ("agent.refresher", "agent.reload", "agent.supervisor"),
    ("agent.app", "agent.fleet"),
    ("agent.cli", "agent.get_command", "agent.__main__", "agent"),
)

# (importer prefix, imported prefixes it must never reach) beyond what the layers already say.
FORBIDDEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("agent.outputs", ("agent.sources", "agent.refresher", "agent.app", "agent.fleet")),
    ("agent.sources", ("agent.outputs", "agent.state", "agent.fleet")),
)

# The bottom of the house: the standard library and each other only.
STDLIB_ONLY = {"agent.snapshot": {"agent.results"}, "agent.results": {"agent.snapshot"}}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    """The layer whose longest matching prefix names `module`."""
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            # "agent" itself is the package's __init__, not a home for every module.
            matches = module == prefix if prefix == "agent" else _within(module, prefix)
            if matches and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)")
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every module `source` imports (function-level and TYPE_CHECKING imports included)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from agent.outputs import http` imports the submodule agent.outputs.http.
            found.update(
                f"{target}.{alias.name}"
                for alias in node.names
                if _is_module(f"{target}.{alias.name}")
            )
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def problems(module: str, imported: set[str]) -> list[str]:
    own = layer_of(module)
    found = []
    for target in sorted(imported):
        if not _within(target, "agent"):
            if module in STDLIB_ONLY and target.split(".")[0] not in sys.stdlib_module_names:
                found.append(f"{module} imports {target}: only the standard library is allowed")
            continue
        level = layer_of(target)
        if module in STDLIB_ONLY and target != module and target not in STDLIB_ONLY[module]:
            found.append(f"{module} imports {target}: only the standard library is allowed")
        elif level > own:
            found.append(f"{module} (layer {own}) imports {target} (layer {level}), upward")
        for importer, banned in FORBIDDEN:
            if _within(module, importer):
                found.extend(
                    f"{module} imports {target}: {importer} never reaches {b}"
                    for b in banned
                    if _within(target, b)
                )
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    for path in _modules():
        layer_of(module_name(path))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_upward(path: Path) -> None:
    module = module_name(path)
    imported = imports_of(path.read_text(), module, path.name == "__init__.py")
    assert problems(module, imported) == []


def test_the_check_catches_each_kind_of_violation() -> None:
    upward = "from agent.refresher import Refresher\nfrom agent import app\n"
    found = problems(
        "agent.outputs.files.output", imports_of(upward, "agent.outputs.files.output", False)
    )
    assert any("agent.refresher (layer 3), upward" in p for p in found)
    assert any("agent.app (layer 4), upward" in p for p in found)
    sideways = "from ...sources.base import Source\n"
    found = problems(
        "agent.outputs.http.server", imports_of(sideways, "agent.outputs.http.server", False)
    )
    assert found == [
        "agent.outputs.http.server imports agent.sources.base: "
        "agent.outputs never reaches agent.sources"
    ]
    bottom = "import aiohttp\nfrom agent.config import Config\n"
    found = problems("agent.snapshot", imports_of(bottom, "agent.snapshot", False))
    assert len(found) == 2
    with pytest.raises(LookupError):
        layer_of("elsewhere.module")
