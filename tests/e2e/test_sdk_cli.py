"""The AWS CLI (PyPI `awscli`, unmodified) with AWS_ENDPOINT_URL_SSM set to a running
`ssm-sidecar run` prints exactly what it prints against SSM (moto)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_cli import AWS, AwsCli
from tests.support.builders import serving_config, write_config
from tests.support.moto import free_port
from tests.support.processes import AgentProcess

CLI = AwsCli("ssm", "AWS_ENDPOINT_URL_SSM", {"AWS_DEFAULT_REGION": "us-east-1"})
aws, both = CLI.run, CLI.both


@pytest.fixture
def cli_parameters(ssm: Any) -> Any:
    values = {f"/cli/many/p{i:02d}": ("String", f"value {i}") for i in range(23)}  # 3 pages
    values["/cli/plain"] = ("String", "plain value")
    values["/cli/list"] = ("StringList", "a,b,c")
    values["/cli/secret"] = ("SecureString", "cli s3cret")
    # moto lists in insertion order, the agent by name: insert by name.
    for name, (kind, value) in sorted(values.items()):
        ssm.put_parameter(Name=name, Value=value, Type=kind)
    return ssm


def test_aws_cli_prints_the_same_through_the_agent(
    cli_parameters: Any, moto_url: str, tmp_path: Path
) -> None:
    assert AWS.exists(), "the AWS CLI comes with the test extra: pip install -e '.[test]'"
    port = free_port()
    config = serving_config(
        moto_url,
        f"127.0.0.1:{port}",
        parameters=[{"path": "/cli"}],
        http={"aws_protocols": ["ssm"], "allowed_uids": [os.getuid()]},
    )
    with AgentProcess("run", "-c", str(write_config(tmp_path / "config.toml", config))) as agent:
        agent.wait_for_event("ready")
        agent.wait_for_event("http_listening")
        endpoint = f"http://127.0.0.1:{port}"
        commands = [
            ["get-parameter", "--name", "/cli/plain"],
            ["get-parameter", "--name", "/cli/secret", "--with-decryption"],
            ["get-parameter", "--name", "/cli/plain:1"],
            [
                "get-parameter",
                "--name",
                "/cli/plain",
                "--query",
                "Parameter.Value",
                "--output",
                "text",
            ],
            ["get-parameters-by-path", "--path", "/cli", "--recursive", "--with-decryption"],
            ["get-parameters-by-path", "--path", "/cli/many", "--page-size", "4"],
        ]
        for command in commands:
            ours, theirs = both(endpoint, moto_url, *command)
            assert ours.returncode == theirs.returncode == 0, (command, ours.stderr)
            if command[-1] == "/cli/plain:1":
                # SSM (and the agent) add "Selector": ":1" for a selector request; moto omits it.
                assert '"Selector": ":1",' in ours.stdout
                ours_stdout = ours.stdout.replace('        "Selector": ":1",\n', "")
                assert ours_stdout == theirs.stdout
            else:
                assert ours.stdout == theirs.stdout, command
            assert ours.stdout.strip()

        missing, reference = both(endpoint, moto_url, "get-parameter", "--name", "/cli/missing")
        assert missing.returncode == reference.returncode != 0
        assert missing.stderr == reference.stderr
        assert "(ParameterNotFound)" in missing.stderr

        write = aws(
            endpoint, "put-parameter", "--name", "/cli/new", "--value", "x", "--type", "String"
        )
        assert write.returncode != 0
        assert "(AccessDeniedException)" in write.stderr and "read-only" in write.stderr
        with pytest.raises(cli_parameters.exceptions.ParameterNotFound):
            cli_parameters.get_parameter(Name="/cli/new")
