"""docs/configuration.md documents every config key, with the default the code really uses.

The keys come from the pydantic models in agent/config.py, so a key added to the code without a
line in the reference (or a key left in the reference after it is gone) fails here. The design's
keys are listed as well: they are the contract and must stay in both.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agent.config import Config

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# Every key of the design's config example (/work/shared/design.md), comments included.
DESIGN_KEYS = {
    "source.type",
    "source.region",
    "source.endpoint_url",
    "source.role_arn",
    "source.external_id",
    "source.path",
    "parameters.path",
    "parameters.recursive",
    "parameters.name",
    "parameters.version",
    "parameters.label",
    "parameters.alias",
    "parameters.required",
    "refresh.interval",
    "refresh.jitter",
    "refresh.max_backoff",
    "http.listen",
    "http.token_file",
    "http.on_demand_prefixes",
    "files.dir",
    "files.mode",
    "files.dir_mode",
    "files.uid",
    "files.gid",
    "files.bundle.path",
    "files.bundle.format",
    "files.bundle.prefix",
    "files.template.source",
    "files.template.path",
    "notify.signal",
    "notify.pid_file",
    "notify.process",
    "notify.command",
    "notify.debounce",
    "exec.on_change",
    "exec.env",
    "exec.stop_timeout",
    "log.level",
    "log.format",
}

# Where the model's default (None) stands for a documented behaviour.
EFFECTIVE_DEFAULTS = {"parameters.recursive": "true"}


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model behind `Section`, `Section | None` or `tuple[Section, ...]`."""
    candidates = [annotation]
    while candidates:
        current = candidates.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            return current
        if typing.get_origin(current) in (tuple, typing.Union, types.UnionType):
            candidates.extend(typing.get_args(current))
    return None


def model_keys(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, Any]:
    """Every leaf key as `section.key` -> its default as the docs spell it."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        sub = _section_model(field.annotation)
        if sub is not None:
            keys.update(model_keys(sub, f"{prefix}{name}."))
            continue
        key = prefix + name
        if key in EFFECTIVE_DEFAULTS:
            keys[key] = EFFECTIVE_DEFAULTS[key]
        elif field.is_required():
            keys[key] = "required"
        else:
            keys[key] = _spell(model, name, field.default)
    return keys


def _spell(model: type[BaseModel], name: str, default: Any) -> str:
    if default is None:
        return "unset"
    # Serialize through the model, so durations and modes read as they are written in TOML.
    dumped = model.__pydantic_serializer__.to_python(
        model.model_construct(**{name: default}), mode="json"
    )[name]
    if isinstance(dumped, str):
        return f'"{dumped}"'
    return json.dumps(dumped)


def documented_keys(text: str) -> dict[str, tuple[str, str, str]]:
    """`section.key` -> (type, default, meaning) from the tables under `## [section]` headings."""
    rows: dict[str, tuple[str, str, str]] = {}
    section: str | None = None
    for line in text.splitlines():
        heading = re.fullmatch(r"#{2,3} \[\[?([a-z_.]+)\]?\]", line.strip())
        if heading:
            section = heading.group(1)
            continue
        if line.startswith("## "):
            section = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section is None or len(cells) != 4 or not cells[0].startswith("`"):
            continue
        key = f"{section}.{cells[0].strip('`')}"
        assert key not in rows, f"{key} documented twice"
        rows[key] = (cells[1], cells[2].strip("`"), cells[3])
    return rows


@pytest.fixture(scope="module")
def documented() -> dict[str, tuple[str, str, str]]:
    return documented_keys(REFERENCE.read_text(encoding="utf-8"))


def test_the_models_hold_every_design_key() -> None:
    assert set(model_keys()) >= DESIGN_KEYS


def test_every_key_is_documented_and_nothing_else(
    documented: dict[str, tuple[str, str, str]],
) -> None:
    keys = set(model_keys())
    assert sorted(keys - set(documented)) == [], "keys missing from docs/configuration.md"
    assert sorted(set(documented) - keys) == [], "docs/configuration.md names unknown keys"
    assert set(documented) >= DESIGN_KEYS


def test_documented_defaults_are_the_real_ones(
    documented: dict[str, tuple[str, str, str]],
) -> None:
    wrong = {
        key: (documented[key][1], default)
        for key, default in model_keys().items()
        if key in documented and documented[key][1] != default
    }
    assert wrong == {}, "documented default != code default: {key: (docs, code)}"


def test_every_key_has_a_type_and_a_meaning(
    documented: dict[str, tuple[str, str, str]],
) -> None:
    for key, (kind, _, meaning) in documented.items():
        assert kind, f"{key}: no type"
        assert len(meaning) > 15, f"{key}: no meaning"


def test_the_parser_sees_tables_of_nested_sections() -> None:
    text = (
        "## [files]\n| key | type | default | meaning |\n|---|---|---|---|\n"
        "| `dir` | path | required | where |\n"
        "### [[files.bundle]]\n| `path` | string | required | the file |\n"
        "## Environment variables\n| `X` | a | b | c |\n"
    )
    assert documented_keys(text) == {
        "files.dir": ("path", "required", "where"),
        "files.bundle.path": ("string", "required", "the file"),
    }
