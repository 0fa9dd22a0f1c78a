"""docs/architecture.md stays true to the tree: every module has its line, the chain its order."""

from __future__ import annotations

import re
from pathlib import Path

from agent.outputs.chain import SLOTS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def test_every_module_under_agent_has_a_line() -> None:
    listed = set(re.findall(r"^\| `(agent/[^`]+\.py)` \|", DOC.read_text(), flags=re.M))
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*.py")}
    assert sorted(on_disk - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - on_disk) == [], "docs/architecture.md lists modules that are gone"


def test_the_chain_order_is_the_declared_one() -> None:
    assert f"**{' → '.join(SLOTS)}**" in DOC.read_text()
