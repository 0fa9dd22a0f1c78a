"""The TOML config file -> one validated, typed, immutable Config.

Every problem is found up front and reported as `file: key: reason`, one line each.
Relative paths in the file are resolved against the directory of the config file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import tomllib
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
from agent.snapshot import AWSCURRENT, SECRETS_MANAGER_PREFIX

DEFAULT_CONFIG_PATH = "/etc/ssm-sidecar/config.toml"
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
    # The agent's own cap on SSM calls (token bucket, burst of one second's worth); 0: none.
    max_calls_per_second: float = Field(default=20.0, ge=0)

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
    sdk_access_key_ids: tuple[str, ...] = ()
    # AWS SDK protocols answered on `POST /` besides SSM's: "secretsmanager" (off by default).
    aws_protocols: tuple[Literal["ssm", "secretsmanager"], ...] = ()
    # Only /ping, /healthz, /readyz and /metrics (no value, no token): may bind any address,
    # so Prometheus and kubelet probes can reach them from outside the pod.
    ops_listen: str | None = None

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
        problems.append(("parameters", "required key is missing (or give [[secrets]])"))
    problems.extend(_secret_checks(cfg, seen_keys))
    if cfg.fleet is not None and cfg.source.type != "ssm":
        problems.append(("fleet", 'needs source.type = "ssm"'))
    if cfg.fleet is not None and cfg.secrets:
        problems.append(("fleet", "cannot be combined with [[secrets]] yet (docs/fleet.md)"))
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


def entry_key(entry: ParameterEntry) -> str:
    """The key of a `name` entry: its alias, else the name without its leading slash."""
    assert entry.name is not None
    if entry.alias:
        return entry.alias
    return entry.name.lstrip("/")


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


def _reason(err: dict[str, Any]) -> tuple[str, str]:
    key = _loc(tuple(err["loc"]))
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        return key, "unknown key"
    if kind == "missing":
        return key, "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    # Validators that speak about a sibling key start their message with "key: ".
    head, sep, rest = msg.partition(": ")
    if sep and head.isidentifier() and err["loc"]:
        return f"{key}.{head}" if key != "(top level)" else head, rest
    return key, msg


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
        raise ConfigError(file, [_reason(dict(e)) for e in exc.errors()]) from None
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(file, problems)
    cfg = cfg.model_copy(update={"origin": Path(file)})
    return _resolve(cfg, base if base is not None else Path(file).resolve().parent)


def load_config(path: str | os.PathLike[str]) -> Config:
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, [("(file)", "not found")]) from None
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
