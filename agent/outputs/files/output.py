"""The files output: every parameter, bundle and template written to files.dir as one atomic set.

A set is written on the first publish and whenever something changed; when the new set would be
byte-for-byte the set already on disk, nothing is touched. Entries that cannot be written (an
unsafe or clashing path, a bundle whose env names clash, a template that fails) are logged and
counted and never stop the rest of the set; a failed bundle or template keeps its previous bytes.

A set that cannot be written at all (disk full, files.dir refused) raises NotDelivered: the chain
then tells nobody of it and publishes again until it is written. Until then the output stays
dirty (it writes on the next publish even without a change) and its FilesStatus says why.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.base import NotDelivered
from agent.outputs.files.atomic_writer import AtomicWriter, Ownership, UnsafePathError, path_problem
from agent.outputs.files.bundles import render_bundle
from agent.outputs.files.directory import UnsafeDirectoryError
from agent.outputs.files.sandbox import RenderLimits
from agent.outputs.files.templates import TemplateError, TemplateRenderer, template_context
from agent.snapshot import Change, Snapshot
from agent.state import FilesStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str
    what: str  # "parameter /myapp/prod/db/url", "bundle app.env", ... (never a value)
    data: bytes | None  # None: nothing to write (failed, and no previous bytes to keep)


class _Layout:
    """Accepts entries whose paths are safe and clash with no entry accepted before them."""

    def __init__(self) -> None:
        self.files: dict[str, _Entry] = {}
        self.dirs: dict[str, _Entry] = {}

    def clash(self, path: str) -> str | None:
        if path in self.files:
            return f"is also the path of {self.files[path].what}"
        if path in self.dirs:
            return f"is a directory holding {self.dirs[path].what}"
        segments = path.split("/")
        for n in range(1, len(segments)):
            parent = "/".join(segments[:n])
            if parent in self.files:
                return f"needs {parent!r} as a directory, but it is {self.files[parent].what}"
        return None

    def add(self, entry: _Entry) -> str | None:
        problem = path_problem(entry.path) or self.clash(entry.path)
        if problem is not None:
            return problem
        self.files[entry.path] = entry
        segments = entry.path.split("/")
        for n in range(1, len(segments)):
            self.dirs.setdefault("/".join(segments[:n]), entry)
        return None


class FilesOutput:
    def __init__(
        self, cfg: FilesConfig, metrics: Metrics, status: FilesStatus | None = None
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        #: The last write, for /healthz (the agent puts this object into AgentState).
        self.status = status if status is not None else FilesStatus(str(cfg.dir))
        self.writer = AtomicWriter(cfg.dir, Ownership(cfg.mode, cfg.dir_mode, cfg.uid, cfg.gid))
        limits = RenderLimits(cfg.template_timeout, cfg.template_max_bytes)
        self._renderers = [TemplateRenderer(t.source, limits) for t in cfg.template]
        self._lock = asyncio.Lock()
        # The set this output last swapped in, to skip rewriting an identical one.
        self._written: dict[str, bytes] | None = None
        self._written_set: str | None = None
        # The last publish could not write its set: write on the next one, change or not.
        self._dirty = False
        # Outputs this one replaced in other directories: their files go once ours are written.
        self._retiring: list[FilesOutput] = []
        #: What went wrong in the last publish (safe to show: names and paths, never values).
        self.problems: tuple[str, ...] = ()

    async def start(self) -> None:
        return None

    async def prepare(self) -> None:
        """Create files.dir if missing; UnsafeDirectoryError when it is not safe to write.

        The agent calls this before it starts, so a refused files.dir stops it at once. Later
        (a reload) the same refusal makes each write fail: logged, counted, shown in /healthz.
        """
        await asyncio.to_thread(self.writer.prepare)

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        if not first and not change and not self._dirty:
            return
        async with self._lock:
            await asyncio.to_thread(self._publish, snapshot, first)
        if self._retiring and not self._dirty:
            retiring, self._retiring = self._retiring, []
            for old in retiring:
                await old.remove_files()

    def replaces(self, old: FilesOutput) -> None:
        """This output takes `old`'s place (a reload). When files.dir moved, `old`'s files are
        removed once this output has written its first set, so no values stay behind and the
        app is never left with neither. What `old` was still to remove is taken over."""
        pending = [old, *old._retiring]
        old._retiring = []
        self._retiring = [o for o in pending if not self.same_dir(o.cfg.dir)]

    def same_dir(self, other: Path) -> bool:
        """Whether `other` is this output's files.dir (also under another name)."""
        if os.path.abspath(other) == os.path.abspath(self.cfg.dir):
            return True
        try:
            a, b = os.stat(other), os.stat(self.cfg.dir)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    async def stop(self) -> None:
        # The files stay: the application may still be reading them. A render under way ends now.
        for renderer in self._renderers:
            renderer.cancel()

    async def remove_files(self) -> None:
        """Remove what this output wrote ([files] removed by a reload, or files.dir moved), and
        what it was still to remove, so no values stay behind; entries the agent did not create
        stay. Failures are logged and counted, never raised."""
        retiring, self._retiring = self._retiring, []
        for old in retiring:
            await old.remove_files()
        async with self._lock:
            try:
                await asyncio.to_thread(self.writer.remove_all)
            except (OSError, UnsafeDirectoryError) as exc:
                self._count("cleanup")
                log.error("files_dir_cleanup_failed", dir=str(self.cfg.dir), reason=_reason(exc))
                return
        log.info("files_dir_cleaned", dir=str(self.cfg.dir))

    # --- one publish, in a worker thread (file I/O must not stall the HTTP API) --------------

    def _publish(self, snapshot: Snapshot, first: bool) -> None:
        problems: list[str] = []
        layout = _Layout()
        for entry in self._entries(snapshot, problems):
            problem = layout.add(entry)
            if problem is not None:
                self._count("path")
                log.error("file_skipped", entry=entry.what, path=entry.path, reason=problem)
                problems.append(f"{entry.what}: path {entry.path!r} {problem}")
        files = {p: e.data for p, e in layout.files.items() if e.data is not None}
        unchanged = files == self._written and self.writer.current_set() == self._written_set
        if unchanged and not first:
            log.debug("files_unchanged", dir=str(self.cfg.dir), files=len(files))
            self.problems = tuple(problems)
            if self._dirty:  # a failed set was reverted to the one on disk
                self._written_now(recovered=True)
            return
        try:
            blocked, set_name = self.writer.write(files)
        except (OSError, UnsafePathError, UnsafeDirectoryError) as exc:
            reason = _reason(exc)
            self._failed(reason)
            problems.append(f"{self.cfg.dir}: set not written: {reason}")
            self.problems = tuple(problems)
            raise NotDelivered(reason) from None
        for name in blocked:
            self._count("path")
            reason = "an entry the agent did not create is in the way"
            log.error("file_link_blocked", dir=str(self.cfg.dir), name=name, reason=reason)
            problems.append(f"{self.cfg.dir / name}: not linked: {reason}")
        self._written, self._written_set = files, set_name
        self.problems = tuple(problems)
        log.info("files_written", dir=str(self.cfg.dir), files=len(files), set=set_name)
        self._written_now(recovered=self._dirty)

    def _failed(self, reason: str) -> None:
        """Count every failed write; log the first of a run, and a change of reason."""
        self._count("write")
        self.metrics.files_write_failing.set(1)
        self._dirty = True
        again = self.status.failures > 0 and self.status.error == reason
        self.status.record_failed(reason)
        (log.debug if again else log.error)(
            "files_write_failed",
            dir=str(self.cfg.dir),
            reason=reason,
            failures=self.status.failures,
            retried="until written; nobody is told of the new values before",
        )

    def _written_now(self, recovered: bool) -> None:
        if recovered:
            log.info("files_write_recovered", dir=str(self.cfg.dir), failures=self.status.failures)
        self._dirty = False
        self.metrics.files_write_failing.set(0)
        self.status.record_written()

    def _entries(self, snapshot: Snapshot, problems: list[str]) -> Iterable[_Entry]:
        """Configured bundles and templates first, then parameters (those already written
        first), so a new parameter can never push out an existing path."""
        for bundle in self.cfg.bundle:
            try:
                data: bytes | None = render_bundle(
                    snapshot, bundle.prefix, bundle.format, bundle.secret, bundle.fields
                )
            except ValueError as exc:  # BundleError, or a key with no usable env name
                data = self.writer.read_current(bundle.path)
                self._count("bundle")
                log.error(
                    "bundle_failed", bundle=bundle.path, reason=str(exc), kept=data is not None
                )
                problems.append(f"bundle {bundle.path}: {exc}")
            yield _Entry(bundle.path, f"bundle {bundle.path}", data)
        context = template_context(snapshot) if self._renderers else {}
        for tpl, renderer in zip(self.cfg.template, self._renderers, strict=True):
            try:
                data = renderer.render(context)
            except TemplateError as exc:
                data = self.writer.read_current(tpl.path)
                self.metrics.template_errors.labels(template=tpl.path).inc()
                log.error(
                    "template_failed",
                    template=tpl.path,
                    source=str(tpl.source),
                    reason=str(exc),
                    kept=data is not None,
                )
                problems.append(f"template {tpl.path}: {exc}")
            yield _Entry(tpl.path, f"template {tpl.path}", data)
        written = self._written or {}
        # Parameters and Secrets Manager secrets share one key space (clashes never reach here).
        values: list[tuple[str, str, str | bytes]] = [
            (p.key, f"parameter {p.name}", p.value) for p in snapshot
        ]
        values += [(s.key, f"secret {s.name}", s.data) for s in snapshot.secrets.values()]
        for key, what, raw in sorted(values, key=lambda v: (v[0] not in written, v[0])):
            try:
                value = raw.encode("utf-8") if isinstance(raw, str) else raw
            except UnicodeEncodeError:
                self._count("value")
                log.error("file_skipped", entry=what, reason="not valid UTF-8")
                problems.append(f"{what}: value is not valid UTF-8")
                continue
            yield _Entry(key, what, value)

    def _count(self, kind: str) -> None:
        self.metrics.files_errors.labels(kind=kind).inc()


def _reason(exc: Exception) -> str:
    """Why, in the OS's words: names files.dir when the error has a full path (errors inside a
    set name an entry relative to its directory, which says nothing more)."""
    if isinstance(exc, OSError) and exc.strerror:
        named = isinstance(exc.filename, str) and os.path.isabs(exc.filename)
        return f"{exc.strerror}: {exc.filename}" if named else exc.strerror
    return str(exc)
