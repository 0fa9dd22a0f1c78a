"""A FilesOutput on a real directory, fed real snapshots, for the files output's unit tests."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.files import FilesOutput
from agent.snapshot import Change, Parameter, Snapshot
from tests.support.builders import snapshot


@contextlib.contextmanager
def reachable_tmp_dir(prefix: str) -> Iterator[Path]:
    """A directory another uid can reach (pytest's tmp dirs are root-only); tmpfs if possible."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o711)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


#: The name of one written set: `..<UTC timestamp with nanoseconds>`.
SET_NAME = re.compile(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d{9}")


class FilesHarness:
    """A FilesOutput (`cfg` as the [files] table) fed snapshots, each diffed against the one
    before; its metrics read back by name."""

    def __init__(self, directory: Path, **cfg: Any) -> None:
        self.dir = directory
        self.metrics = Metrics()
        self.cfg = FilesConfig.model_validate({"dir": directory, **cfg})
        self.output = FilesOutput(self.cfg, self.metrics)
        self.snapshot = Snapshot()

    async def publish(self, *params: Parameter, first: bool = False) -> Change:
        new = snapshot(*params, generation=self.snapshot.generation + 1)
        change, self.snapshot = self.snapshot.diff(new), new
        await self.output.publish(new, change, first)
        return change

    def errors(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "ssm_sidecar_files_errors_total", {"kind": kind}
        )
        return value or 0.0

    def failing(self) -> float | None:
        return self.metrics.registry.get_sample_value("ssm_sidecar_files_write_failing")

    def sets(self) -> list[str]:
        return sorted(n for n in os.listdir(self.dir) if SET_NAME.fullmatch(n))
