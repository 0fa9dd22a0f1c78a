"""How parameter names become keys (files, bundles) and environment variable names."""

from __future__ import annotations

import re

_NOT_ENV = re.compile(r"[^A-Z0-9_]")


def key_under(path: str, name: str) -> str:
    """The key of `name` listed under `path`: relative, without a leading slash."""
    prefix = path.rstrip("/") + "/"
    if prefix != "/" and name.startswith(prefix):
        return name[len(prefix) :]
    return name.lstrip("/")


def env_name(key: str) -> str:
    """Upper-cased, every character outside [A-Z0-9_] becomes _ (the design's rule, exactly)."""
    return _NOT_ENV.sub("_", key.upper())


def env_names(keys: list[str]) -> dict[str, str]:
    """env name -> key; raises ValueError naming both keys when two map to one name."""
    out: dict[str, str] = {}
    for key in keys:
        name = env_name(key)
        if name in out and out[name] != key:
            raise ValueError(f"keys {out[name]!r} and {key!r} both become {name}")
        out[name] = key
    return out
