"""docs/benchmarks.md keeps one well-formed section per benchmark that `make bench` runs, and the
goals table reads what the benchmarks record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import goals
from bench.__main__ import BENCHMARKS, _selected

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
MARKER = re.compile(r"<!-- bench:(\S+):(begin|end) -->")


def test_every_section_is_opened_and_closed_once_without_another_inside() -> None:
    open_key: str | None = None
    seen: list[str] = []
    for match in MARKER.finditer(DOC.read_text()):
        key, edge = match.groups()
        if edge == "begin":
            assert open_key is None, f"{key} begins inside {open_key}"
            assert key not in seen, f"{key} appears twice"
            open_key = key
            seen.append(key)
        else:
            assert open_key == key, f"{key} ends while {open_key} is open"
            open_key = None
    assert open_key is None
    assert sorted(seen) == sorted(name.replace("_", "-") for name in BENCHMARKS)


def test_the_goals_table_is_rebuilt_after_any_selection() -> None:
    assert _selected("serving") == ["serving", "goals"]
    assert _selected(None)[-1] == "goals"


def test_goals_show_before_after_and_whether_met(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def route(ratio: float) -> dict[str, float]:
        return {"ratio_cpu": ratio, "rps_best": 30_000, "p99_ms": 1.2}

    figures = {
        "16/before/v1": route(0.8),
        "16/after/v1": route(0.97),
        "16/before/extension": route(0.9),
        "16/after/extension": route(0.93),
    }
    (tmp_path / "serving.json").write_text(
        json.dumps(
            {
                "benchmark": "serving",
                "date": "2026-12-02 19:00",
                "commit": "abc1234",
                "load_at_start": 0.1,
                "figures": figures,
            }
        )
    )
    monkeypatch.setattr(goals, "RESULTS", tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in goals.measure().splitlines()}
    v1 = rows["`GET /v1/parameters/{name}`, CPU per request vs bare aiohttp, 16 connections"]
    assert "| 0.80 | 0.97 | yes |" in v1
    assert "abc1234" in v1
    extension = rows["extension route, CPU per request vs bare aiohttp, 16 connections"]
    assert "| 0.90 | 0.93 | **no** |" in extension
    memory = rows["peak RSS (VmHWM), 1,000 parameters, SSM source, HTTP + files"]
    assert "not run" in memory
