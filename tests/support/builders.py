"""Build test data: parameters, secrets, snapshots and agent configs, with the defaults most
tests want.

Every keyword has a plain default, so a test names only what it is about:
`parameter("/app/db/url", "pg://db", version=3)`, `secret("prod/db", version_id="v2")`,
`snapshot(p1, p2, s1, generation=2)`, `agent_config(files={"dir": "params"})`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.keys import key_under
from agent.snapshot import Parameter, Secret, Snapshot

#: The default last-modified moment; its microseconds show any millisecond rounding.
MODIFIED = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
#: What a parameter's ARN starts with (us-east-1, a made-up account).
ARN_PREFIX = "arn:aws:ssm:us-east-1:123456789012:parameter/"
#: What a secret's ARN starts with; Secrets Manager adds "-" and six random characters.
SECRET_ARN_PREFIX = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"


def parameter(
    name: str,
    value: str = "v",
    *,
    key: str | None = None,
    under: str = "/app",
    version: int = 1,
    type: str = "String",
    last_modified: datetime = MODIFIED,
    arn: str | None = None,
    selector: str | None = None,
    encrypted: str | None = None,
) -> Parameter:
    """One served parameter. Its key is `key`, else what a `[[parameters]] path = under` entry
    gives it, as agent_config's default `path = "/app"` does: "/app/db/url" -> "db/url"; a name
    outside `under` -> the name without its leading slash. Its ARN is the one SSM gives it in
    us-east-1 unless `arn` says otherwise."""
    return Parameter(
        name=name,
        key=key if key is not None else key_under(under, name),
        type=type,
        value=value,
        version=version,
        last_modified=last_modified,
        arn=arn if arn is not None else f"{ARN_PREFIX}{name.lstrip('/')}",
        selector=selector,
        encrypted_value=encrypted,
    )


def secret(
    name: str,
    value: str | None = "s3cret-value",
    *,
    key: str | None = None,
    version_id: str = "v1",
    stages: tuple[str, ...] = ("AWSCURRENT",),
    created: datetime = MODIFIED,
    arn: str | None = None,
    binary: bytes | None = None,
    selector: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Secret:
    """One served secret version (`value` is the SecretString; None with `binary` for a
    SecretBinary). Its key is the name unless `key` says otherwise; its ARN is the one Secrets
    Manager gives it, with "-AbCdEf" as the random suffix, unless `arn` says otherwise."""
    return Secret(
        name=name,
        key=key if key is not None else name,
        arn=arn if arn is not None else f"{SECRET_ARN_PREFIX}{name}-AbCdEf",
        version_id=version_id,
        version_stages=stages,
        created=created,
        string=value,
        binary=binary,
        selector=selector,
        metadata=MappingProxyType(dict(metadata or {})),
    )


def snapshot(*items: Parameter | Secret, generation: int = 1) -> Snapshot:
    """The parameters (by name) and secrets (by ident) given, as one snapshot."""
    params = {i.name: i for i in items if isinstance(i, Parameter)}
    secrets = {i.ident: i for i in items if isinstance(i, Secret)}
    return Snapshot.build(params, generation, secrets)


def values_snapshot(
    values: Mapping[str, str], *, under: str = "/app", generation: int = 1, type: str = "String"
) -> Snapshot:
    """key -> value, each a parameter named `under`/key at version `generation`."""
    prefix = under.rstrip("/")
    return snapshot(
        *(
            parameter(f"{prefix}/{key}", value, key=key, version=generation, type=type)
            for key, value in values.items()
        ),
        generation=generation,
    )


# --- configs -------------------------------------------------------------------------------------


def ssm_source(endpoint_url: str, *, max_attempts: int = 1, timeout: str = "5s") -> dict[str, Any]:
    """A `[source]` table for SSM at `endpoint_url` (moto, or the fault proxy in front of it)."""
    return {
        "type": "ssm",
        "region": "us-east-1",
        "endpoint_url": endpoint_url,
        "max_attempts": max_attempts,
        "timeout": timeout,
    }


def agent_config(source: Mapping[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """An agent config as TOML tables (dicts; lists of dicts for arrays of tables).

    The file source reading `values.toml` beside the config unless `source` says otherwise,
    `[[parameters]] path = "/app"` and the HTTP API off unless `parameters`/`http` are given;
    every other section as given. A section given as None is left out.
    """
    config = {
        "source": dict(source) if source is not None else {"type": "file", "path": "values.toml"},
        "parameters": [{"path": "/app"}],
        "http": {"enabled": False},
        **sections,
    }
    return {name: body for name, body in config.items() if body is not None}


def serving_config(endpoint_url: str, listen: str, **sections: Any) -> dict[str, Any]:
    """agent_config for a `run` process that clients talk to: SSM at `endpoint_url`, the API on
    `listen` with its token in run/token (keys in an `http` section are added), a refresh each
    hour (the tests ask, they do not wait for a cycle), JSON logs; other sections as given."""
    http = {"listen": listen, "token_file": "run/token", **sections.pop("http", {})}
    return agent_config(
        ssm_source(endpoint_url),
        **{"refresh": {"interval": "1h"}, "log": {"format": "json"}, **sections, "http": http},
    )


def write_file_source(directory: Path, values: str, **sections: Any) -> Path:
    """`values.toml` holding `values` and `config.toml` (agent_config(**sections)) in
    `directory`; returns the config's path."""
    write_atomic(directory / "values.toml", values)
    return write_config(directory / "config.toml", agent_config(**sections))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def toml_text(config: Mapping[str, Any]) -> str:
    """Sections are dicts (tables) or lists of dicts (arrays of tables); in a table, a dict or
    a list of dicts is a sub-table (`[files.bundle]`-style), anything else a scalar or list."""
    out: list[str] = []

    def table(header: str, body: Mapping[str, Any]) -> None:
        out.append(header)
        nested = {k: v for k, v in body.items() if _is_table(v)}
        out.extend(f"{k} = {_toml_value(v)}" for k, v in body.items() if k not in nested)
        out.append("")
        name = header.strip("[]")
        for key, sub in nested.items():
            section(f"{name}.{key}", sub)

    def section(name: str, body: Any) -> None:
        if isinstance(body, list):
            for item in body:
                table(f"[[{name}]]", item)
        else:
            table(f"[{name}]", body)

    for name, body in config.items():
        section(name, body)
    return "\n".join(out)


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping) or (
        isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)
    )


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    write_atomic(path, toml_text(config))
    return path


def write_atomic(path: Path, text: str) -> None:
    """Replace the file in one step, so the agent never reads it half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
