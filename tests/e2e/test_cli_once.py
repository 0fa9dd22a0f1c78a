"""`ssm-sidecar once` against moto: one line per problem, no traceback; empty is not complete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.builders import ssm_source, write_config
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import REPO, agent_command

NAMELESS = json.dumps({"Parameters": [{"Type": "String", "Value": "x", "Version": 1}]})


def _once(tmp_path: Path, url: str, parameters: list[dict[str, Any]]) -> tuple[int, list[str]]:
    config = write_config(
        tmp_path / "config.toml",
        {
            "source": ssm_source(url),
            "parameters": parameters,
            "http": {"enabled": False},
            "files": {"dir": str(tmp_path / "params")},
        },
    )
    done = subprocess.run(
        agent_command("once", "-c", str(config)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    printed = [line for line in done.stderr.splitlines() if line.startswith("ssm-sidecar: ")]
    return done.returncode, printed


def test_an_unexpected_error_in_the_cycle_is_one_line_and_exit_1(
    tmp_path: Path, ssm: Any, fault_proxy: FaultProxy
) -> None:
    ssm.put_parameter(Name="/app/a", Value="alpha", Type="String")
    fault_proxy.add_fault("GetParametersByPath", "reply", status=200, message=NAMELESS)
    code, printed = _once(tmp_path, fault_proxy.url, [{"path": "/app"}])
    assert code == 1
    assert len(printed) == 1 and "KeyError" in printed[0], printed
    assert not (tmp_path / "params").exists() or not any((tmp_path / "params").iterdir())


def test_a_required_path_that_lists_nothing_is_missing(
    tmp_path: Path, ssm: Any, moto_url: str
) -> None:
    ssm.put_parameter(Name="/app/a", Value="alpha", Type="String")
    code, printed = _once(tmp_path, moto_url, [{"path": "/app"}, {"path": "/apq"}])
    assert code == 1
    assert printed == ["ssm-sidecar: load incomplete: /apq"]


def test_an_optional_path_may_list_nothing(tmp_path: Path, ssm: Any, moto_url: str) -> None:
    ssm.put_parameter(Name="/app/a", Value="alpha", Type="String")
    code, printed = _once(
        tmp_path, moto_url, [{"path": "/app"}, {"path": "/opt", "required": False}]
    )
    assert (code, printed) == (0, [])
    assert (tmp_path / "params" / "a").read_text() == "alpha"
