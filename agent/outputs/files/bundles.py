"""Bundles: every parameter under a prefix (or every field of a JSON secret) in one dotenv or
JSON file, under its env name.

dotenv values are always double-quoted; inside the quotes `\\`, `"`, newline and carriage return
are escaped as `\\\\`, `\\"`, `\\n` and `\\r`, which is exactly what python-dotenv (and the other
dotenv parsers that follow it) un-escape. `$` is written as is: python-dotenv has no escape for
it, so a reader must turn variable expansion off (`dotenv_values(path, interpolate=False)`) for a
value holding `${...}` to come back unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from agent.keys import env_names
from agent.snapshot import Snapshot

_DOTENV_NAME = re.compile(r"[A-Za-z0-9_]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}


class BundleError(ValueError):
    """The bundle cannot be built (two keys with one env name). The message holds no value."""


def quote_dotenv(value: str) -> str:
    """`value` as a double-quoted dotenv value that parses back to exactly `value`."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def render_dotenv(pairs: Mapping[str, str]) -> str:
    """`NAME="value"` lines, sorted by name. Names must be env names ([A-Za-z0-9_]+)."""
    lines = []
    for name in sorted(pairs):
        if not _DOTENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a dotenv variable name")
        lines.append(f"{name}={quote_dotenv(pairs[name])}\n")
    return "".join(lines)


def render_json(pairs: Mapping[str, str]) -> str:
    """One JSON object {NAME: value}, keys sorted, UTF-8 as is."""
    return json.dumps(dict(sorted(pairs.items())), ensure_ascii=False, indent=2) + "\n"


def bundle_pairs(snapshot: Snapshot, prefix: str) -> dict[str, str]:
    """env name -> value of every parameter whose name is under `prefix`.

    Raises BundleError naming both keys when two keys normalize to one env name (or naming the
    key that normalizes to no name at all).
    """
    by_key = {p.key: p.value for p in snapshot.under(prefix, recursive=True)}
    try:
        names = env_names(sorted(by_key))
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    for name, key in names.items():
        if not _DOTENV_NAME.fullmatch(name):
            raise BundleError(f"key {key!r} gives no usable variable name")
    return {name: by_key[key] for name, key in names.items()}


def secret_pairs(snapshot: Snapshot, key: str, fields: tuple[str, ...] = ()) -> dict[str, str]:
    """env name -> value of the fields of the JSON secret whose key is `key` (all, or `fields`).

    Raises BundleError (naming the secret and fields, never a value) when the secret is not
    served, is not a JSON object, lacks a field, or two fields share an env name."""
    found = [s for s in snapshot.secrets.values() if s.key == key]
    if not found:
        raise BundleError(f"secret {key!r} is not served (see its [[secrets]] entry's errors)")
    values = found[0].fields()
    if values is None:
        raise BundleError(f"secret {key!r} is not a JSON object, so it has no fields")
    missing = [f for f in fields if f not in values]
    if missing:
        raise BundleError(f"secret {key!r} has no field {', '.join(map(repr, missing))}")
    wanted = {f: values[f] for f in fields} if fields else values
    try:
        names = env_names(sorted(wanted))
    except ValueError as exc:
        raise BundleError(f"secret {key!r}: {exc}") from None
    for name, field in names.items():
        if not _DOTENV_NAME.fullmatch(name):
            raise BundleError(f"secret {key!r}: field {field!r} gives no usable variable name")
    return {name: wanted[field] for name, field in names.items()}


def render_bundle(
    snapshot: Snapshot,
    prefix: str,
    fmt: str,
    secret: str | None = None,
    fields: tuple[str, ...] = (),
) -> bytes:
    """A bundle of the parameters under `prefix`, or of the fields of the JSON `secret`."""
    pairs = (
        bundle_pairs(snapshot, prefix) if secret is None else secret_pairs(snapshot, secret, fields)
    )
    text = render_json(pairs) if fmt == "json" else render_dotenv(pairs)
    return text.encode("utf-8")
