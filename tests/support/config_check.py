"""`ssm-sidecar check` on a config text, for tests of what a broken config is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


def assert_check_refuses(
    path: Path, text: str, key: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`text` written to `path`: `check` exits 2 with a `path: key: ...` line whose reason holds
    `reason` (case aside)."""
    path.write_text(text)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    line = next((line for line in err.splitlines() if f": {key}: " in line), err)
    assert line.startswith(f"{path}: {key}: "), err
    assert reason.lower() in line.lower(), line
