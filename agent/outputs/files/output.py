"""The files output: every parameter, bundle and template written to files.dir as one atomic set.

A set is written on the first publish and whenever something changed; when the new set would be
byte-for-byte the set already on disk, nothing is touched. Entries that cannot be written (an
unsafe or clashing path, a bundle whose env names clash, a template that fails) are logged and
counted and never stop the rest of the set; a failed bundle or template keeps its previous bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.files.atomic_writer import AtomicWriter, Ownership, UnsafePathError, path_problem
from agent.outputs.files.bundles import render_bundle
from agent.outputs.files.templates import TemplateError, TemplateRenderer, template_context
from agent.snapshot import Change, Snapshot

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
    def __init__(self, cfg: FilesConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.writer = AtomicWriter(cfg.dir, Ownership(cfg.mode, cfg.dir_mode, cfg.uid, cfg.gid))
        self._renderers = [TemplateRenderer(t.source) for t in cfg.template]
        self._lock = asyncio.Lock()
        # The set this output last swapped in, to skip rewriting an identical one.
        self._written: dict[str, bytes] | None = None
        self._written_set: str | None = None
        #: What went wrong in the last publish (safe to show: names and paths, never values).
        self.problems: tuple[str, ...] = ()

    async def start(self) -> None:
        return None

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        if not first and not change:
            return
        async with self._lock:
            await asyncio.to_thread(self._publish, snapshot, first)

    async def stop(self) -> None:
        # The files stay: the application may still be reading them.
        return None

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
            return
        try:
            blocked, set_name = self.writer.write(files)
        except (OSError, UnsafePathError) as exc:
            self._count("write")
            reason = _os_reason(exc)
            log.error("files_write_failed", dir=str(self.cfg.dir), reason=reason)
            problems.append(f"{self.cfg.dir}: set not written: {reason}")
            self.problems = tuple(problems)
            return
        for name in blocked:
            self._count("path")
            reason = "an entry that is not a symlink is in the way"
            log.error("file_link_blocked", dir=str(self.cfg.dir), name=name, reason=reason)
            problems.append(f"{self.cfg.dir / name}: not linked: {reason}")
        self._written, self._written_set = files, set_name
        self.problems = tuple(problems)
        log.info("files_written", dir=str(self.cfg.dir), files=len(files), set=set_name)

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


def _os_reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
