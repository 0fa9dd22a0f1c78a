"""The TOML config file -> one validated, typed, immutable Config.

Every problem is found up front and reported as `file: key: reason`, one line each.
Relative paths in the file are resolved against the directory of the config file.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import os
import re
import signal
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.durations import format_duration, parse_duration
from agent.keys import path_problem
from agent.snapshot import AWSCURRENT, SECRETS_MANAGER_PREFIX

DEFAULT_CONFIG_PATH = "/etc/ssm-sidecar/config.toml"
#: Values of http.aws_protocols this version serves.
AWS_PROTOCOLS = ("ssm", "secretsmanager")
CONFIG_ENV = "SSM_SIDECAR_CONFIG"


class ConfigError(Exception):
    """One or more problems in a config file; str() gives one `file: key: reason` line each."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}: {key}: {reason}" for key, reason in problems))


def _duration(v: Any) -> float:
    return parse_duration(v)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _octal_mode(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError('expected an octal mode such as "0400"')
    if isinstance(v, int):
        mode = v
    elif isinstance(v, str) and v.strip().isdigit():
        try:
            mode = int(v.strip(), 8)
        except ValueError:
            raise ValueError(f'{v!r} is not an octal mode such as "0400"') from None
    else:
        raise ValueError(f'{v!r} is not an octal mode such as "0400"')
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"{v!r} is out of range for a file mode")
    return mode


Mode = Annotated[int, BeforeValidator(_octal_mode), PlainSerializer(lambda m: f"{m:04o}")]


def _signal_name(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError('expected a signal name such as "SIGHUP"')
    name = v.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in signal.Signals.__members__ or name.startswith("SIG_"):
        raise ValueError(f"{v!r} is not a known signal name")
    return name


SignalName = Annotated[str, BeforeValidator(_signal_name)]


# What botocore accepts as a region name (it refuses others when the client is built).
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


def region_problem(value: str) -> str | None:
    """Why `value` cannot be an AWS region name, or None."""
    if not _REGION.match(value):
        return f"{value!r} is not a region name such as eu-west-1"
    return None


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SourceConfig(Section):
    type: Literal["ssm", "file"] = "ssm"
    region: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    path: Path | None = None
    # Attempts per SSM call, botocore's own retries included; the refresher backs off on top.
    max_attempts: int = Field(default=3, ge=1, le=10)
    timeout: Duration = 10.0
    # The agent's own cap on SSM calls (a token bucket); 0: none.
    max_calls_per_second: float = Field(default=20.0, ge=0)
    # Calls the bucket holds: a first load of up to ~2,000 parameters goes at full speed.
    max_calls_burst: int = Field(default=200, ge=1)

    @field_validator("region")
    @classmethod
    def _region_shape(cls, v: str | None) -> str | None:
        problem = None if v is None else region_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("external_id")
    @classmethod
    def _external_id_needs_role(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and not info.data.get("role_arn"):
            raise ValueError("needs role_arn")
        return v

    @field_validator("role_arn")
    @classmethod
    def _role_arn_shape(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("arn:"):
            raise ValueError(f"{v!r} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return v

    @field_validator("path")
    @classmethod
    def _path_only_for_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None and info.data.get("type") != "file":
            raise ValueError('only used with type = "file"')
        return v

    @model_validator(mode="after")
    def _file_needs_path(self) -> SourceConfig:
        if self.type == "file" and self.path is None:
            raise ValueError('path: required with type = "file"')
        return self


class ParameterEntry(Section):
    path: str | None = None
    recursive: bool | None = None
    name: str | None = None
    version: int | None = Field(default=None, ge=1)
    label: str | None = None
    alias: str | None = None
    required: bool = True

    @field_validator("path")
    @classmethod
    def _path_shape(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{v!r} must start with /")
        return v

    @field_validator("name")
    @classmethod
    def _name_alone(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("path") is not None:
            raise ValueError("cannot be combined with path in one entry")
        if not v.strip() or v != v.strip():
            raise ValueError("must be a non-empty name without surrounding spaces")
        return v

    @field_validator("label")
    @classmethod
    def _label_not_with_version(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("version") is not None:
            raise ValueError("cannot be combined with version (pin one or the other)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> ParameterEntry:
        if self.path is None and self.name is None:
            raise ValueError("each [[parameters]] entry needs path or name")
        if self.path is not None:
            for key in ("version", "label", "alias"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only valid with name, not with path")
        if self.name is not None and self.recursive is not None:
            raise ValueError("recursive: only valid with path, not with name")
        pinned = self.version is not None or self.label is not None
        if self.name is not None and self.name.startswith(SECRETS_MANAGER_PREFIX) and pinned:
            raise ValueError("version: Secrets Manager references cannot be pinned here")
        return self

    @property
    def is_recursive(self) -> bool:
        return self.recursive is not False

    @property
    def selector(self) -> str | None:
        if self.version is not None:
            return f":{self.version}"
        if self.label is not None:
            return f":{self.label}"
        return None


#: What Secrets Manager accepts in a secret name.
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_SECRET_ARN = re.compile(r"arn:[a-z-]+:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+")


class SecretEntry(Section):
    """One `[[secrets]]` entry: a secret by name or ARN (`id`), or every secret under `prefix`."""

    id: str | None = None
    prefix: str | None = None
    version_stage: str | None = Field(default=None, min_length=1, max_length=256)
    version_id: str | None = Field(default=None, min_length=32, max_length=64)
    alias: str | None = None
    required: bool = True

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str | None) -> str | None:
        if v is None or _SECRET_NAME.fullmatch(v) or _SECRET_ARN.fullmatch(v):
            return v
        raise ValueError(
            f"{v!r} is neither a secret name (letters, digits and /_+=.@-) nor a secret ARN "
            "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
        )

    @field_validator("prefix")
    @classmethod
    def _prefix_shape(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("id") is not None:
            raise ValueError("cannot be combined with id in one entry")
        if not _SECRET_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not the start of a secret name (letters, digits, /_+=.@-)")
        return v

    @field_validator("version_id")
    @classmethod
    def _one_version(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("version_stage") is not None:
            raise ValueError("cannot be combined with version_stage (pin one or the other)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> SecretEntry:
        if self.id is None and self.prefix is None:
            raise ValueError("each [[secrets]] entry needs id or prefix")
        if self.prefix is not None:
            if self.alias is not None or self.version_id is not None:
                key = "alias" if self.alias is not None else "version_id"
                raise ValueError(f"{key}: only valid with id, not with prefix")
            if self.version_stage not in (None, AWSCURRENT):
                raise ValueError("version_stage: a prefix serves AWSCURRENT only")
        return self

    @property
    def is_arn(self) -> bool:
        return bool(self.id and self.id.startswith("arn:"))

    @property
    def stage(self) -> str | None:
        """The staging label asked for (None when pinned to a version id)."""
        if self.version_id is not None:
            return None
        return self.version_stage or AWSCURRENT

    @property
    def selector(self) -> str | None:
        """How a pinned entry's Secret is told apart (`Secret.selector`); None for AWSCURRENT."""
        if self.version_id is not None:
            return f"version:{self.version_id}"
        if self.version_stage not in (None, AWSCURRENT):
            return f"stage:{self.version_stage}"
        return None


def secret_key(entry: SecretEntry, name: str) -> str:
    """The key of the secret `name` loaded for `entry`: its alias, else its name."""
    return entry.alias or name


class RefreshConfig(Section):
    interval: Duration = 30.0
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    max_backoff: Duration = 300.0
    # The first SSM call waits a random time up to this (a fleet restarted together).
    splay: Duration = 0.0
    # A cycle that would remove more than this share of the served set waits for the next cycle
    # to confirm it (a listing cut short looks like a mass deletion). 1.0 turns the hold off.
    max_removal_share: float = Field(default=0.5, ge=0.0, le=1.0)
    # "names": between listings, cycles read the listed names with GetParameters (its quota
    # grows with higher throughput; GetParametersByPath's does not); every `relist_every`-th
    # cycle lists the paths again to find new names.
    list_by: Literal["path", "names"] = "path"
    relist_every: int = Field(default=10, ge=1)

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, v: float) -> float:
        if v < 0.1:
            raise ValueError("must be at least 100ms")
        return v


def _check_listen(v: str, *, loopback_only: bool = True) -> str:
    if v.startswith("unix:"):
        if not v[5:]:
            raise ValueError('"unix:" needs a socket path')
        return v
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{v!r} is not HOST:PORT or unix:/PATH")
    host = host.strip("[]")
    if host == "localhost":
        return v
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address or localhost") from None
    if loopback_only and not addr.is_loopback:
        raise ValueError(f"{host} is not a loopback address; the API only listens on loopback")
    return v


class HttpConfig(Section):
    enabled: bool = True
    listen: str = "127.0.0.1:2773"
    token_file: Path = Path("/run/ssm-sidecar/token")
    on_demand_prefixes: tuple[str, ...] = ()
    max_concurrency: int = Field(default=256, ge=1)
    # Connections and bodies (docs/configuration.md): a cap on open connections, the deadlines
    # of a connection's phases, the body size, the long-poll cap.
    max_connections: int = Field(default=512, ge=8)
    max_long_polls: int | None = Field(default=None, ge=1)  # unset: max_concurrency / 4
    idle_timeout: Duration = 60.0
    header_timeout: Duration = 10.0
    body_timeout: Duration = 10.0
    max_body_bytes: int = Field(default=65536, ge=1024)
    # Work a request makes the source do: token buckets (per second, then at most burst at once).
    on_demand_rate: float = Field(default=10.0, gt=0)
    on_demand_burst: int = Field(default=40, ge=1)
    refresh_rate: float = Field(default=0.2, gt=0)
    refresh_burst: int = Field(default=5, ge=1)
    sdk_access_key_ids: tuple[str, ...] = ()
    # The AWS SDK protocols answered on `POST /` (off by default: SDKs cannot send the token).
    aws_protocols: tuple[str, ...] = ()
    # When set, every route of the API listener answers only connections from these uids.
    allowed_uids: tuple[int, ...] | None = None
    # Only /ping, /healthz, /readyz and /metrics (no value, no token): may bind any address,
    # so Prometheus and kubelet probes can reach them from outside the pod.
    ops_listen: str | None = None

    @field_validator("idle_timeout", "header_timeout", "body_timeout")
    @classmethod
    def _timeout_floor(cls, v: float) -> float:
        if v < 0.1:
            raise ValueError("must be at least 100ms")
        return v

    @model_validator(mode="after")
    def _long_polls_leave_room(self) -> HttpConfig:
        if self.max_long_polls is not None and self.max_long_polls >= self.max_concurrency:
            raise ValueError(
                f"max_long_polls: must be less than max_concurrency ({self.max_concurrency}), "
                "or waiting long-polls could hold every request slot"
            )
        return self

    @property
    def long_poll_limit(self) -> int:
        if self.max_long_polls is not None:
            return self.max_long_polls
        return max(1, self.max_concurrency // 4)

    @field_validator("ops_listen")
    @classmethod
    def _ops_listen_shape(cls, v: str | None) -> str | None:
        return None if v is None else _check_listen(v, loopback_only=False)

    @field_validator("listen")
    @classmethod
    def _listen_loopback(cls, v: str) -> str:
        return _check_listen(v)

    @field_validator("on_demand_prefixes")
    @classmethod
    def _prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"{p!r} must start with /")
        return v

    @field_validator("sdk_access_key_ids")
    @classmethod
    def _access_key_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for key in v:
            if not (key.isascii() and key.isalnum()):
                raise ValueError(f"{key!r} is not an access key id (letters and digits only)")
        return v

    @field_validator("aws_protocols")
    @classmethod
    def _aws_protocols(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in AWS_PROTOCOLS:
                raise ValueError(f"{name!r} is not a protocol; choose from {list(AWS_PROTOCOLS)}")
        return tuple(dict.fromkeys(v))

    @field_validator("allowed_uids")
    @classmethod
    def _uids(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must list at least one uid (leave the key out to admit every uid)")
        for uid in v:
            if not 0 <= uid < 2**32 - 1:
                raise ValueError(f"{uid} is not a uid")
        return v

    @model_validator(mode="after")
    def _sdk_needs_uids(self) -> HttpConfig:
        if self.aws_protocols and self.allowed_uids is None and not self.listen.startswith("unix:"):
            raise ValueError(
                "allowed_uids: required when http.aws_protocols is set on a TCP listener: SDK "
                "requests carry no token, so only the uids listed here may read (e.g. [1000], "
                "the `id -u` of the app's user); or listen on a unix socket"
            )
        return self


class BundleConfig(Section):
    path: str
    format: Literal["dotenv", "json"] = "dotenv"
    prefix: str = "/"
    # A JSON secret's fields instead of parameters: `secret` is a [[secrets]] key (its alias,
    # else its name); `fields` picks some (default: every field).
    secret: str | None = None
    fields: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _secret_or_prefix(self) -> BundleConfig:
        if self.secret is not None and "prefix" in self.model_fields_set:
            raise ValueError(
                "secret: cannot be combined with prefix (a bundle holds one or the other)"
            )
        if self.fields and self.secret is None:
            raise ValueError("fields: only valid with secret")
        return self


class TemplateConfig(Section):
    source: Path
    path: str


class FilesConfig(Section):
    dir: Path
    mode: Mode = 0o400
    dir_mode: Mode = 0o700
    uid: int | None = Field(default=None, ge=0)
    gid: int | None = Field(default=None, ge=0)
    bundle: tuple[BundleConfig, ...] = ()
    template: tuple[TemplateConfig, ...] = ()
    # Per render of each template: past either, the render stops and the previous output stays.
    template_timeout: Duration = 2.0
    template_max_bytes: int = Field(default=1 << 20, ge=1)

    @field_validator("template_timeout")
    @classmethod
    def _timeout_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be more than 0")
        return v


class NotifyConfig(Section):
    signal: SignalName = "SIGHUP"
    pid_file: Path | None = None
    process: str | None = None
    command: tuple[str, ...] = ()
    command_timeout: Duration = 30.0
    debounce: Duration = 1.0

    @field_validator("process")
    @classmethod
    def _one_target(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("pid_file") is not None:
            raise ValueError("cannot be combined with pid_file (choose one target)")
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v


class ExecConfig(Section):
    on_change: Literal["signal", "restart", "none"] = "signal"
    env: bool = False
    stop_timeout: Duration = 10.0
    # The agent's AWS credential variables reach the child only when asked for (least privilege).
    pass_aws_credentials: bool = False

    @model_validator(mode="after")
    def _env_needs_restart(self) -> ExecConfig:
        if self.env and self.on_change != "restart":
            raise ValueError(
                'env: values in the environment only change on restart; set on_change = "restart"'
            )
        return self


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


_FLEET_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class FleetConfig(Section):
    """`[fleet]`: many agents share one watcher through Valkey/Redis (docs/fleet.md)."""

    url: str
    name: str
    key_parameter: str
    watch_interval: Duration = 2.0
    safety_interval: Duration = 900.0

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://", "valkey://", "valkeys://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not _FLEET_NAME.fullmatch(v):
            raise ValueError(f"{v!r} must be 1 to 64 letters, digits or ._-")
        return v

    @field_validator("key_parameter")
    @classmethod
    def _key_parameter_shape(cls, v: str) -> str:
        if not (v.startswith("/") or v.startswith("arn:")):
            raise ValueError(f"{v!r} must be a parameter name starting with / or an ARN")
        return v

    @field_validator("watch_interval")
    @classmethod
    def _watch_floor(cls, v: float) -> float:
        if v < 0.2:
            raise ValueError("must be at least 200ms")
        return v

    @model_validator(mode="after")
    def _safety_above_watch(self) -> FleetConfig:
        if self.safety_interval < self.watch_interval:
            raise ValueError("safety_interval: must not be shorter than watch_interval")
        return self

    @property
    def redis_url(self) -> str:
        """valkey:// is an alias of redis:// (the client library knows only the latter)."""
        if self.url.startswith("valkey"):
            return "redis" + self.url[len("valkey") :]
        return self.url


class Config(Section):
    source: SourceConfig = SourceConfig()
    parameters: tuple[ParameterEntry, ...] = ()
    secrets: tuple[SecretEntry, ...] = ()
    refresh: RefreshConfig = RefreshConfig()
    http: HttpConfig = HttpConfig()
    files: FilesConfig | None = None
    notify: NotifyConfig = NotifyConfig()
    exec: ExecConfig = ExecConfig()
    log: LogConfig = LogConfig()
    fleet: FleetConfig | None = None
    # Where this config was read from; not a key of the file.
    origin: Path = Field(default=Path("<memory>"), exclude=True)

    def describe(self) -> dict[str, Any]:
        """The effective config as plain data (for `check`); it holds no parameter values."""
        return self.model_dump(mode="json", exclude_none=True)


def _cross_checks(cfg: Config) -> list[tuple[str, str]]:
    """Problems that span entries: overlapping paths, names inside paths, duplicate keys."""
    problems: list[tuple[str, str]] = []
    paths = [(i, e) for i, e in enumerate(cfg.parameters) if e.path is not None]
    names = [(i, e) for i, e in enumerate(cfg.parameters) if e.name is not None]

    def covers(entry: ParameterEntry, name: str) -> bool:
        assert entry.path is not None
        prefix = entry.path.rstrip("/") + "/"
        if not name.startswith(prefix):
            return False
        return entry.is_recursive or "/" not in name[len(prefix) :]

    for n, (i, a) in enumerate(paths):
        for j, b in paths[n + 1 :]:
            assert a.path is not None and b.path is not None
            if a.path.rstrip("/") == b.path.rstrip("/") or covers(a, b.path) or covers(b, a.path):
                problems.append(
                    (f"parameters[{j}].path", f"overlaps parameters[{i}].path {a.path!r}")
                )
    seen_keys: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for i, e in names:
        assert e.name is not None
        for j, p in paths:
            if covers(p, e.name):
                problems.append(
                    (f"parameters[{i}].name", f"is already under parameters[{j}].path {p.path!r}")
                )
        if e.name in seen_names:
            problems.append(
                (f"parameters[{i}].name", f"duplicates parameters[{seen_names[e.name]}].name")
            )
        seen_names.setdefault(e.name, i)
        key = entry_key(e)
        if key in seen_keys:
            problems.append(
                (f"parameters[{i}]", f"key {key!r} is also the key of parameters[{seen_keys[key]}]")
            )
        seen_keys.setdefault(key, i)
    for i, bundle in enumerate(cfg.files.bundle if cfg.files else ()):
        if not bundle.prefix.startswith("/"):
            problems.append((f"files.bundle[{i}].prefix", f"{bundle.prefix!r} must start with /"))
    if not cfg.parameters and not cfg.secrets:
        problems.append(
            (
                "parameters",
                "required key is missing: add at least one [[parameters]] (or [[secrets]]) table",
            )
        )
    problems.extend(_secret_checks(cfg, seen_keys))
    if cfg.fleet is not None and cfg.source.type != "ssm":
        problems.append(("fleet", 'needs source.type = "ssm"'))
    if cfg.fleet is not None and cfg.secrets:
        problems.append(("fleet", "cannot be combined with [[secrets]] yet (docs/fleet.md)"))
    if cfg.files is not None:
        problems.extend(_file_path_problems(cfg))
    return problems


def _secret_checks(cfg: Config, parameter_keys: dict[str, int]) -> list[tuple[str, str]]:
    """Secrets: one entry per (secret, version), unique keys (parameters' keys included),
    bundles that name a configured secret."""
    problems: list[tuple[str, str]] = []
    prefixes = [(i, e.prefix) for i, e in enumerate(cfg.secrets) if e.prefix is not None]
    seen: dict[tuple[str, str | None], int] = {}
    keys: dict[str, int] = {}
    for i, e in enumerate(cfg.secrets):
        if e.prefix is not None:
            for j, other in prefixes:
                if j < i and (e.prefix.startswith(other) or other.startswith(e.prefix)):
                    problems.append(
                        (f"secrets[{i}].prefix", f"overlaps secrets[{j}].prefix {other!r}")
                    )
            continue
        assert e.id is not None
        for j, prefix in prefixes:
            if e.selector is None and not e.is_arn and e.id.startswith(prefix):
                problems.append(
                    (f"secrets[{i}].id", f"is already under secrets[{j}].prefix {prefix!r}")
                )
        if (e.id, e.selector) in seen:
            problems.append(
                (f"secrets[{i}].id", f"duplicates secrets[{seen[(e.id, e.selector)]}].id")
            )
        seen.setdefault((e.id, e.selector), i)
        if e.is_arn and e.alias is None:
            continue  # its key is its name, known once loaded (clashes are load errors then)
        key = secret_key(e, e.id)
        if key in keys:
            problems.append(
                (f"secrets[{i}]", f"key {key!r} is also the key of secrets[{keys[key]}]")
            )
        elif key in parameter_keys:
            problems.append(
                (
                    f"secrets[{i}]",
                    f"key {key!r} is also the key of parameters[{parameter_keys[key]}]",
                )
            )
        keys.setdefault(key, i)
    for i, bundle in enumerate(cfg.files.bundle if cfg.files else ()):
        if (
            bundle.secret is not None
            and bundle.secret not in keys
            and not any(e.is_arn or e.prefix is not None for e in cfg.secrets)
        ):
            problems.append(
                (
                    f"files.bundle[{i}].secret",
                    f"{bundle.secret!r} is not the key of any [[secrets]] entry",
                )
            )
    return problems


def _file_path_problems(cfg: Config) -> list[tuple[str, str]]:
    """The paths under files.dir known before any value: those the files output would refuse.

    The same order and rules as the files output: bundles, then templates, then the keys of
    `name` entries and of `[[secrets]]` ids; a path that is unsafe, or clashes with one claimed
    before it, is refused.
    """
    assert cfg.files is not None
    claims: list[tuple[str, str, str]] = []  # (config key, path, what it is)
    for i, b in enumerate(cfg.files.bundle):
        claims.append((f"files.bundle[{i}].path", b.path, f"files.bundle[{i}]"))
    for i, t in enumerate(cfg.files.template):
        claims.append((f"files.template[{i}].path", t.path, f"files.template[{i}]"))
    for i, e in enumerate(cfg.parameters):
        if e.name is not None:
            field = "alias" if e.alias else "name"
            claims.append((f"parameters[{i}].{field}", entry_key(e), f"parameters[{i}]"))
    for i, s in enumerate(cfg.secrets):
        if s.id is not None and (s.alias or not s.is_arn):
            field = "alias" if s.alias else "id"
            claims.append((f"secrets[{i}].{field}", secret_key(s, s.id), f"secrets[{i}]"))
    problems: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    dirs: dict[str, str] = {}
    for key, path, what in claims:
        problem = path_problem(path) or _path_clash(path, files, dirs)
        if problem is not None:
            problems.append((key, f"{path!r} {problem} (a path under files.dir)"))
            continue
        files[path] = what
        segments = path.split("/")
        for n in range(1, len(segments)):
            dirs.setdefault("/".join(segments[:n]), what)
    return problems


def _path_clash(path: str, files: dict[str, str], dirs: dict[str, str]) -> str | None:
    if path in files:
        return f"is also the path of {files[path]}"
    if path in dirs:
        return f"is a directory holding {dirs[path]}"
    segments = path.split("/")
    for n in range(1, len(segments)):
        parent = "/".join(segments[:n])
        if parent in files:
            return f"needs {parent!r} as a directory, but it is the path of {files[parent]}"
    return None


def entry_key(entry: ParameterEntry) -> str:
    """The key of a `name` entry: its alias, else the name without its leading slash."""
    assert entry.name is not None
    if entry.alias:
        return entry.alias
    return entry.name.lstrip("/")


def where_configured(parameters: tuple[ParameterEntry, ...], name: str) -> str | None:
    """The [[parameters]] entry that asks for `name` (`path /app`, `name /app/x`), or None."""
    slashed = "/" + name.lstrip("/")
    for entry in parameters:
        if entry.name is not None and slashed == "/" + entry.name.lstrip("/"):
            return f"name {entry.name}"
        if entry.path is not None:
            prefix = entry.path.rstrip("/") + "/"
            rest = slashed[len(prefix) :]
            if slashed.startswith(prefix) and (entry.is_recursive or "/" not in rest):
                return f"path {entry.path}"
    return None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _toml_kind(value: Any) -> str:
    """What a TOML value is, in the words of the TOML spec."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        tables = bool(value) and all(isinstance(v, dict) for v in value)
        return "an array of tables" if tables else "an array"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return "a value of another kind"


def _toml_literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | int | float) else _toml_kind(value)


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; `Annotated[X, ...]` -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _field_at(loc: tuple[int | str, ...]) -> tuple[Any, type[BaseModel] | None]:
    """(the annotation at `loc`, the model holding it) by walking the Config models."""
    annotation: Any = Config
    owner: type[BaseModel] | None = None
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            if typing.get_origin(annotation) is tuple:
                annotation = typing.get_args(annotation)[0]
                continue
            return None, None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None, None
        field = annotation.model_fields.get(part)
        if field is None:
            return None, annotation
        owner, annotation = annotation, field.annotation
    return _unwrap(annotation), owner


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _table_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if isinstance(p, str))


def _array_words(element: Any) -> str:
    words = {str: "strings", int: "integers", Path: "paths (strings)"}
    return words.get(_unwrap(element), "values")


def _keys_of(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [name for name, f in model.model_fields.items() if not f.exclude]


def _phrase(err: dict[str, Any]) -> str | None:
    """pydantic's error in the words of the TOML file, or None to keep pydantic's message."""
    loc = tuple(err["loc"])
    kind = err["type"]
    got = _toml_kind(err.get("input"))
    ctx = err.get("ctx") or {}
    annotation = _field_at(loc)[0]
    if kind == "extra_forbidden":
        parent_owner = _field_at(loc[:-1])[0] if loc else None
        close = difflib.get_close_matches(str(loc[-1]), _keys_of(parent_owner), n=1)
        return "unknown key" + (f' (did you mean "{close[0]}"?)' if close else "")
    if kind == "missing":
        if loc == ("parameters",):
            return "required key is missing: add at least one [[parameters]] table"
        return "required key is missing"
    if kind in ("tuple_type", "list_type"):
        element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else None
        if _is_section(element):
            name = _table_name(loc)
            text = f"must be an array of tables ([[{name}]]), got {got}"
            if got == "a table":
                text += f" ([{name}]); write each entry as [[{name}]]"
            return text
        return f'must be an array of {_array_words(element)} such as ["a", "b"], got {got}'
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        if loc and isinstance(loc[-1], int):
            return f"must be a table ([[{_table_name(loc)}]] entry), got {got}"
        return f"must be a table ([{_table_name(loc)}]), got {got}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer, got {got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (a TOML boolean, no quotes), got {got}"
    if kind == "string_type":
        return f"must be a string (in quotes), got {got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {got}"
    if kind == "path_type":
        return f"must be a path (a string), got {got}"
    if kind == "literal_error":
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
        if choices:
            listed = " or ".join(json.dumps(c) for c in choices)
            return f"must be {listed}, got {_toml_literal(err.get('input'))}"
    bounds = {
        "greater_than_equal": ("ge", "must be at least"),
        "less_than_equal": ("le", "must be at most"),
        "greater_than": ("gt", "must be more than"),
        "less_than": ("lt", "must be less than"),
    }
    if kind in bounds and bounds[kind][0] in ctx:
        key, words = bounds[kind]
        return f"{words} {ctx[key]}"
    if kind == "too_short":
        element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else None
        if _is_section(element) and ctx.get("min_length") == 1:
            return f"at least one [[{_table_name(loc)}]] table is required"
        return f"must hold at least {ctx.get('min_length', 1)} item(s)"
    return None


def _reason(err: dict[str, Any]) -> tuple[str, str]:
    key = _loc(tuple(err["loc"]))
    phrased = _phrase(err)
    if phrased is not None:
        return key, phrased
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    # Validators that speak about a sibling key start their message with "key: ".
    head, sep, rest = msg.partition(": ")
    if sep and head.isidentifier() and err["loc"]:
        return f"{key}.{head}" if key != "(top level)" else head, rest
    return key, msg


def _relevant(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without pydantic's echoes: an array whose only item failed is also "too short"."""
    locs = [tuple(e["loc"]) for e in errors]

    def echoed(err: dict[str, Any]) -> bool:
        loc = tuple(err["loc"])
        return err["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in locs
        )

    return [e for e in errors if not echoed(e)]


def _resolve(cfg: Config, base: Path) -> Config:
    def rel(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    updates: dict[str, Any] = {"origin": cfg.origin}
    if cfg.source.path is not None:
        updates["source"] = cfg.source.model_copy(update={"path": rel(cfg.source.path)})
    updates["http"] = cfg.http.model_copy(update={"token_file": rel(cfg.http.token_file)})
    if cfg.files is not None:
        templates = tuple(
            t.model_copy(update={"source": rel(t.source)}) for t in cfg.files.template
        )
        updates["files"] = cfg.files.model_copy(
            update={"dir": rel(cfg.files.dir), "template": templates}
        )
    if cfg.notify.pid_file is not None:
        updates["notify"] = cfg.notify.model_copy(update={"pid_file": rel(cfg.notify.pid_file)})
    return cfg.model_copy(update=updates)


def parse_config(data: dict[str, Any], file: str = "<memory>", base: Path | None = None) -> Config:
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        errors = _relevant([dict(e) for e in exc.errors()])
        raise ConfigError(file, [_reason(e) for e in errors]) from None
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(file, problems)
    cfg = cfg.model_copy(update={"origin": Path(file)})
    return _resolve(cfg, base if base is not None else Path(file).resolve().parent)


def load_config(path: str | os.PathLike[str], *, not_found: str = "not found") -> Config:
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, [("(file)", not_found)]) from None
    except OSError as exc:
        raise ConfigError(file, [("(file)", f"cannot be read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, [("(file)", "is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, [("(syntax)", f"invalid TOML: {exc}")]) from None
    return parse_config(data, file)


def default_config_path() -> str:
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_given_config(given: str | None) -> Config:
    """The config named by -c, else by $SSM_SIDECAR_CONFIG, else the default path; when that
    is missing, the error says how to name one."""
    if given:
        return load_config(given)
    if os.environ.get(CONFIG_ENV):
        return load_config(os.environ[CONFIG_ENV], not_found=f"not found (named by ${CONFIG_ENV})")
    return load_config(
        DEFAULT_CONFIG_PATH,
        not_found=(
            f"not found; name a config with -c CONFIG or ${CONFIG_ENV} "
            "(config.example.toml in the ssm-sidecar sources is a starting point, "
            "docs/configuration.md lists every key)"
        ),
    )
