"""Config reload: on SIGHUP and on every edit of the config file.

The file is read and validated whole; a config with any problem is logged (`config_reload_failed`,
with the `file: key: reason` lines) and the running config stays. A good one is compared section
by section with the running one (`plan_reload`); the agent then applies only what changed and
refreshes at once. `[http]` and `[log]` are only read at start: a change there is logged as
needing a restart and otherwise left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.config import Config, ConfigError, load_config
from agent.dirwatch import watch_file
from agent.sources.region import resolve_source_region
from agent.tasks import describe, where

log = structlog.get_logger(__name__)

NEEDS_RESTART = ("http", "log", "fleet")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    source: (
        bool  # [source], [[parameters]] or [[secrets]]: a new source (the snapshot and state stay)
    )
    refresh: bool
    files: bool
    notify: bool
    exec: bool
    needs_restart: tuple[str, ...]

    @property
    def changed(self) -> list[str]:
        names = ["source", "refresh", "files", "notify", "exec"]
        return [n for n in names if getattr(self, n)] + list(self.needs_restart)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    return ReloadPlan(
        source=(old.source, old.parameters, old.secrets)
        != (new.source, new.parameters, new.secrets),
        refresh=old.refresh != new.refresh,
        files=old.files != new.files,
        notify=old.notify != new.notify,
        exec=old.exec != new.exec,
        needs_restart=tuple(s for s in NEEDS_RESTART if getattr(old, s) != getattr(new, s)),
    )


def read_config(path: Path) -> Config | None:
    """The new config, or None (logged) when it has problems. May block (instance metadata)."""
    try:
        return resolve_source_region(load_config(path))
    except ConfigError as exc:
        log.error("config_reload_failed", file=str(path), error=str(exc), kept="running config")
        return None


class Reloader:
    """Coalesces reload requests (signals, file events) and applies them one at a time."""

    def __init__(
        self,
        path: Path,
        apply: Callable[[Config], Awaitable[None]],
        refresh: Callable[[], None],
    ) -> None:
        self.path = path.absolute()
        self._apply = apply
        self._refresh = refresh
        self._wanted = asyncio.Event()

    def request(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            # In a thread: finding the region may ask instance metadata (up to ~1 s).
            cfg = await asyncio.to_thread(read_config, self.path)
            if cfg is None:
                self._refresh()  # a reload also means "refresh now", with the running config
                continue
            try:
                await self._apply(cfg)
            except ConfigError as exc:
                log.error("config_reload_failed", file=str(self.path), error=str(exc))
            except Exception as exc:  # a reload must never end the reloader
                log.error(
                    "config_reload_failed",
                    file=str(self.path),
                    error=describe(exc),
                    where=where(exc),
                )

    async def watch(self) -> None:
        async for _ in watch_file(self.path):
            log.info("config_file_changed", file=str(self.path))
            self.request()
