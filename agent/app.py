"""Wires config -> source -> refresher -> snapshot -> outputs, and owns the lifecycle."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import structlog

import agent.tasks as tasks
from agent.children import reap_forever
from agent.config import Config, FilesConfig, where_configured
from agent.fleet.budget import CallBudget
from agent.logs import redactor
from agent.metrics import Metrics
from agent.outputs.base import Output
from agent.outputs.chain import RETRY_MAX, OutputChain, Slot
from agent.outputs.files import FilesOutput
from agent.outputs.http import HttpServer, OnDemandCache, OpsServer, TokenBucket
from agent.outputs.notify import build_notify, systemd_notifier_from_env
from agent.refresher import Refresher
from agent.reload import Reloader, plan_reload
from agent.results import CycleResult
from agent.snapshot import Change, Parameter, Snapshot
from agent.sources.base import Source
from agent.sources.composite import CompositeSource
from agent.sources.factory import build_source
from agent.sources.file import FileSource
from agent.sources.ssm import SsmSource
from agent.state import AgentState, FilesStatus
from agent.supervisor import Supervisor

if TYPE_CHECKING:
    from agent.fleet.fleet import Fleet

log = structlog.get_logger(__name__)


def _register_secrets(snapshot: Snapshot) -> None:
    values: list[str] = []
    for p in snapshot:
        values.append(p.value)
        if p.encrypted_value:
            values.append(p.encrypted_value)
    for secret in snapshot.secrets.values():  # Secrets Manager: the value and each JSON field
        values.append(secret.text)
        values.extend((secret.fields() or {}).values())
    redactor.update(values)


async def _close(source: Source) -> None:
    """Close a source; a failure is logged, never raised over what the caller is returning."""
    try:
        await source.close()
    except Exception as exc:
        log.error("source_close_failed", error=repr(exc))


class Agent:
    def __init__(
        self,
        cfg: Config,
        *,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        exec_argv: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.state = AgentState()
        self.state.on_swap.append(_register_secrets)
        self.source = build_source(cfg, self.metrics)
        self._budget(self.source, cfg, rng)
        # --- fleet mode: the fleet's source wraps the SSM source (docs/fleet.md) ---
        self.fleet: Fleet | None = None
        if cfg.fleet is not None:
            # Imported here: an agent without [fleet] never loads the Valkey client.
            from agent.fleet.fleet import Fleet

            assert isinstance(self.source, SsmSource)  # config.py refuses any other source
            self.fleet = Fleet(cfg, self.source, self.metrics, self.state, rng)
            self.source = self.fleet.source
        # --- end fleet mode ---
        self.refresher = Refresher(
            self.source, cfg.refresh, self.state, self.metrics, self._publish, rng
        )
        if self.fleet is not None:
            self.fleet.on_change = self.refresher.trigger
        # Exec mode: the app is our child, started after the first complete load.
        self.supervisor = Supervisor(exec_argv, cfg.exec, self.metrics) if exec_argv else None
        self.outputs = self._build_chain()
        # Every background task is watched: one that dies ends `run` with exit 1 and a reason.
        self.watch = tasks.TaskWatch()
        self.failure: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._source_watch: asyncio.Task[None] | None = None
        self.reloader = (
            Reloader(cfg.origin, self.apply_config, self.refresher.trigger)
            if cfg.origin.is_file()
            else None
        )

    @staticmethod
    def _budget(source: Source, cfg: Config, rng: random.Random | None) -> None:
        """The SSM call budget (token bucket + start-up splay), with or without a fleet."""
        ssm = source.parameters if isinstance(source, CompositeSource) else source
        if isinstance(ssm, SsmSource):
            budget = CallBudget(
                cfg.source.max_calls_per_second,
                cfg.refresh.splay,
                rng,
                burst=cfg.source.max_calls_burst,
            )
            ssm.set_budget(budget.take)

    def _build_chain(self) -> OutputChain:
        cfg = self.cfg
        outputs: dict[Slot, Output | None] = {
            "http": self._http_server() if cfg.http.enabled else None,
            "ops": (
                OpsServer(cfg.http.ops_listen, self.state, self.metrics, cfg.http)
                if cfg.http.ops_listen is not None
                else None
            ),
            "files": self._files_output(cfg.files),
            "exec": self.supervisor,
            "notify": build_notify(cfg.notify, self.metrics, self.supervisor),
            "systemd": systemd_notifier_from_env(self.state, cfg.refresh.interval),
        }
        return OutputChain(
            outputs, self.metrics, self.refresher.mark_ready, self._retry_max(cfg.refresh.interval)
        )

    @staticmethod
    def _retry_max(interval: float) -> float:
        # A set the files output could not write is retried at least once per refresh interval.
        return min(RETRY_MAX, interval)

    def _files_output(self, cfg: FilesConfig | None) -> FilesOutput | None:
        """The files output for `cfg`, its status shown in /healthz (None: no [files])."""
        if cfg is None:
            self.state.files = None
            self.metrics.files_write_failing.set(0)
            return None
        output = FilesOutput(cfg, self.metrics, FilesStatus(str(cfg.dir)))
        self.state.files = output.status
        return output

    async def check_files_dir(self) -> None:
        """Create files.dir if missing; UnsafeDirectoryError (naming it) when it is not safe."""
        files = self.outputs.get("files")
        if isinstance(files, FilesOutput):
            await files.prepare()

    def _http_server(self) -> HttpServer:
        http = self.cfg.http
        interval = self.cfg.refresh.interval
        on_demand = OnDemandCache(
            self._fetch_on_demand,
            http.on_demand_prefixes,
            interval,
            limit=TokenBucket(
                "on_demand",
                http.on_demand_rate,
                http.on_demand_burst,
                self.metrics.http_rate_limited,
            ),
        )
        return HttpServer(
            http,
            self.state,
            self.metrics,
            refresh=self.refresher.refresh_now,
            on_demand=on_demand.get,
            interval=interval,
            on_demand_version=on_demand.get_version,
            # self.cfg at call time: a reload may change [[parameters]].
            configured=lambda name: where_configured(self.cfg.parameters, name),
        )

    async def _fetch_on_demand(self, name: str) -> Parameter | None:
        # Through self.source at call time: a config reload may replace the source.
        parameter = await self.source.fetch(name)
        if parameter is not None:
            redactor.add(parameter.value, parameter.encrypted_value)
        return parameter

    async def _publish(self, snapshot: Snapshot, change: Change, first: bool) -> bool:
        return await self.outputs.publish(snapshot, change, first)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = tasks.spawn(coro, name)
        self._tasks.append(task)
        return task

    async def _watch_source_file(self, source: FileSource) -> None:
        async for _ in source.changes():
            log.info("source_file_changed", path=str(source.path))
            self.refresher.trigger()

    def _watch_source(self) -> None:
        if self._source_watch is not None:
            tasks.release(self._source_watch)
            self._source_watch.cancel()
            self._source_watch = None
        if isinstance(self.source, FileSource):
            self._source_watch = self._spawn(self._watch_source_file(self.source), "source-watch")

    async def start(self) -> None:
        self.watch.install()  # before any task starts, outputs' own tasks included
        await self.check_files_dir()  # before anything listens or starts
        await self.outputs.start()
        if self.fleet is not None:
            self._spawn(self.fleet.run(), "fleet")
        self._spawn(self.refresher.run(), "refresher")
        self._watch_source()
        if self.reloader is not None:
            self._spawn(self.reloader.run(), "reload")
            self._spawn(self.reloader.watch(), "config-watch")
        if os.getpid() == 1:  # a container's init: orphans are re-parented to us
            self._spawn(reap_forever(), "reaper")
        log.info(
            "started",
            source=self.cfg.source.type,
            region=self.cfg.source.region,
            entries=len(self.cfg.parameters),
            interval=self.cfg.refresh.interval,
        )

    async def stop(self) -> None:
        self.watch.close()
        for task in self._tasks:
            await tasks.cancel(task)
        self._tasks.clear()
        await self.outputs.stop()
        await _close(self.source)
        log.info("stopped")

    def reload(self) -> None:
        """SIGHUP: re-read the config file, apply it, refresh now."""
        log.info("reload_requested")
        if self.reloader is not None:
            self.reloader.request()
        else:
            self.refresher.trigger()

    async def apply_config(self, new: Config) -> None:
        """A reloaded config: change what changed, keep the snapshot (no gap), refresh now."""
        plan = plan_reload(self.cfg, new)
        for section in plan.needs_restart:
            log.warning("config_reload_needs_restart", section=section)
        new = new.model_copy(update={"http": self.cfg.http, "log": self.cfg.log})
        old_source = self.source
        if self.fleet is not None and plan.source:  # fleet mode: the fleet's source stays
            log.warning("config_reload_needs_restart", section="source (fleet mode)")
            new = new.model_copy(
                update={k: getattr(self.cfg, k) for k in ("source", "parameters", "fleet")}
            )
        elif plan.source:  # built first: if this fails, nothing has changed yet
            self.source = self.refresher.source = build_source(new, self.metrics)
            self._budget(self.source, new, None)
            self._watch_source()
            # Names the new config no longer asks for go at once, however many they are.
            self.refresher.removals.expect_removals()
        self.cfg = new
        self.refresher.cfg = new.refresh
        self.outputs.retry_max = self._retry_max(new.refresh.interval)
        if self.supervisor is not None:
            self.supervisor.cfg = new.exec
        served = self.state.snapshot if self.state.ready else None
        if plan.files:
            old, files = self.outputs.get("files"), self._files_output(new.files)
            # files.dir moved or [files] went: no values stay behind in the old directory.
            if isinstance(old, FilesOutput) and files is not None:
                files.replaces(old)  # once the new directory holds the set
            await self.outputs.replace("files", files, served)
            if isinstance(old, FilesOutput) and files is None:
                await old.remove_files()
        if plan.notify:
            notify = build_notify(new.notify, self.metrics, self.supervisor)
            await self.outputs.replace("notify", notify, served)
        log.info("config_reloaded", changed=plan.changed)
        await self.refresher.cycle()  # waits for a cycle in flight on the old source
        if old_source is not self.source:
            await _close(old_source)
        if plan.refresh:
            self.refresher.trigger()  # re-time the poll loop with the new interval

    async def run(self, stop: asyncio.Event) -> int:
        """Until `stop` is set, a background task dies (exit 1; the reason is in `failure`) or,
        in exec mode, the child exits; returns the exit code."""
        try:
            await self.start()  # a files.dir refusal ends it before anything listens
        except BaseException:
            await self.stop()  # whatever had started (listeners, tasks) ends here
            raise
        died = tasks.spawn(self.watch.wait(), "watch", may_end=True)
        ends: list[asyncio.Task[Any]] = [tasks.spawn(stop.wait(), "stop", may_end=True), died]
        if self.supervisor is not None:
            ends.append(tasks.spawn(self.supervisor.wait(), "child-exit", may_end=True))
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                await tasks.cancel(end)
            if self.watch.reason is not None:
                self.failure = self.watch.reason
                log.error("agent_failed", reason=self.failure, exit_code=1)
            await self.stop()
        if self.failure is not None:
            return 1
        return self.supervisor.exit_code() if self.supervisor is not None else 0

    async def once(self) -> CycleResult:
        """One complete load and every output written once (for init containers)."""
        try:
            await self.check_files_dir()
            return await self.refresher.cycle()
        finally:
            await self.outputs.stop()  # logs each output that fails to stop
            await _close(self.source)
