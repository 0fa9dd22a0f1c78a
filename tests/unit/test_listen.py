"""http.listen accepts loopback TCP and unix sockets only; `check` refuses anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from tests.support.builders import agent_config, write_config


def check(tmp_path: Path, listen: str) -> int:
    config = write_config(tmp_path / "config.toml", agent_config(http={"listen": listen}))
    return main(["check", "-c", str(config)])


@pytest.mark.parametrize("listen", ["0.0.0.0:2773", "10.1.2.3:2773", "[::]:2773", "example.com:80"])
def test_non_loopback_listen_is_refused_by_check(
    tmp_path: Path, listen: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, listen) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "config.toml: http.listen:" in err


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:2773", "localhost:2773", "[::1]:2773", "unix:/run/ssm-sidecar/a.sock"]
)
def test_loopback_and_unix_are_accepted(
    tmp_path: Path, listen: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, listen) == 0
    assert listen in capsys.readouterr().out
