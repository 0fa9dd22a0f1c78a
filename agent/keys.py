"""How parameter names become keys (files, bundles) and environment variable names, and which
keys can be paths under files.dir (pure: config validation and the files output both ask)."""

from __future__ import annotations

import re

_NOT_ENV = re.compile(r"[^A-Z0-9_]")

NAME_MAX = 255
# Well under the kernel's 4096, leaving room for files.dir and the set's own name.
PATH_MAX = 2048


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


def path_problem(path: str) -> str | None:
    """Why `path` may not be written under the directory, or None when it is safe.

    Safe means: relative, segments that are neither empty nor `.`/`..`, no NUL, encodable, and a
    first segment that does not start with `..` (those names belong to the writer).
    """
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL character"
    if path.startswith("/"):
        return "is an absolute path"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(path.encode("utf-8")) > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    segments = path.split("/")
    for segment in segments:
        if segment == "":
            return "has an empty path segment"
        if segment in (".", ".."):
            return f"has a {segment!r} path segment"
        if len(segment.encode("utf-8")) > NAME_MAX:
            return f"has a path segment longer than {NAME_MAX} bytes"
    if segments[0].startswith(".."):
        return "starts with '..' (reserved for the writer's own entries)"
    return None
