"""Acceptance 4: unmodified clients read secrets through a running `ssm-sidecar run` and get
moto's answers: boto3 and the AWS CLI with AWS_ENDPOINT_URL_SECRETS_MANAGER, the
`aws-secretsmanager-caching` library (PyPI) on such a client, and a client written for the
Lambda extension's route (plain urllib with the documented token header)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_cli import AWS, AwsCli
from tests.support.builders import serving_config, write_config
from tests.support.moto import DUMMY_AWS_ENV, REGION, free_port
from tests.support.processes import AgentProcess
from tests.support.secrets import seed_db_secret

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
CLI = AwsCli("secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER", DUMMY_AWS_ENV)
aws, both = CLI.run, CLI.both


@pytest.fixture
def seeded(secretsmanager: Any) -> Any:
    fields = seed_db_secret(secretsmanager)
    secretsmanager.put_secret_value(
        SecretId="prod/db", SecretString=json.dumps({**fields, "password": "second"})
    )
    secretsmanager.create_secret(Name="shared/cert", SecretBinary=b"\x00\x01binary\xff")
    secretsmanager.create_secret(
        Name="shared/api-key", SecretString="k-123", Description="the API key"
    )
    return secretsmanager


def sdk(endpoint: str) -> Any:
    """A boto3 client configured only by the environment, as an unmodified app's is."""
    import boto3

    saved = os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER")
    os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
    try:
        return boto3.session.Session().client("secretsmanager", region_name=REGION)
    finally:
        if saved is None:
            del os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"]
        else:
            os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = saved


def strip(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "ResponseMetadata"}


def test_unmodified_clients_read_secrets_through_the_agent(
    seeded: Any, moto_url: str, tmp_path: Path
) -> None:
    from aws_secretsmanager_caching import SecretCache

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = serving_config(
        moto_url,
        f"127.0.0.1:{port}",
        parameters=None,
        secrets=[
            {"id": "prod/db", "alias": "db.json"},
            {"id": "prod/db", "version_stage": "AWSPREVIOUS", "alias": "db_previous"},
            {"prefix": "shared/"},
        ],
        http={"aws_protocols": ["secretsmanager"], "allowed_uids": [os.getuid()]},
    )
    with AgentProcess("run", "-c", str(write_config(tmp_path / "config.toml", config))) as agent:
        agent.wait_for_event("ready")
        agent.wait_for_event("http_listening")
        ours, theirs = sdk(endpoint), seeded

        # boto3: the three reads answer what Secrets Manager answers.
        for ask in (
            {"SecretId": "prod/db"},
            {"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"},
            {"SecretId": "shared/cert"},
        ):
            assert strip(ours.get_secret_value(**ask)) == strip(theirs.get_secret_value(**ask))
        ids = ["prod/db", "shared/api-key", "prod/missing"]
        assert strip(ours.batch_get_secret_value(SecretIdList=ids)) == strip(
            theirs.batch_get_secret_value(SecretIdList=ids)
        )
        mine = strip(ours.describe_secret(SecretId="shared/api-key"))
        reference = strip(theirs.describe_secret(SecretId="shared/api-key"))
        for field in ("ARN", "Name", "Description", "VersionIdsToStages", "CreatedDate"):
            assert mine[field] == reference[field], field
        with pytest.raises(ours.exceptions.ResourceNotFoundException):
            ours.get_secret_value(SecretId="prod/missing")
        with pytest.raises(ours.exceptions.ClientError) as denied:
            ours.put_secret_value(SecretId="prod/db", SecretString="x")
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

        # The AWS CLI prints the same through the agent as against Secrets Manager.
        assert AWS.exists(), "the AWS CLI comes with the test extra"
        for command in (
            ["get-secret-value", "--secret-id", "prod/db"],
            ["get-secret-value", "--secret-id", "prod/db", "--version-stage", "AWSPREVIOUS"],
            ["get-secret-value", "--secret-id", "shared/cert"],
            ["get-secret-value", "--secret-id", "shared/api-key", "--query", "SecretString"],
            ["batch-get-secret-value", "--secret-id-list", "prod/db", "shared/api-key"],
        ):
            mine_cli, reference_cli = both(endpoint, moto_url, *command)
            assert mine_cli.returncode == reference_cli.returncode == 0, mine_cli.stderr
            assert mine_cli.stdout == reference_cli.stdout, command
        missing = aws(endpoint, "get-secret-value", "--secret-id", "prod/missing")
        assert missing.returncode != 0 and "(ResourceNotFoundException)" in missing.stderr

        # aws-secretsmanager-caching on a client pointed at the agent (DescribeSecret, then
        # GetSecretValue by VersionId).
        cache = SecretCache(client=sdk(endpoint))
        assert (
            cache.get_secret_string("prod/db")
            == theirs.get_secret_value(SecretId="prod/db")["SecretString"]
        )
        assert cache.get_secret_binary("shared/cert") == b"\x00\x01binary\xff"

        # A client written for the Lambda extension: plain urllib, the documented header.
        token = (tmp_path / "run" / "token").read_text().strip()
        request = urllib.request.Request(  # noqa: S310 (a loopback http URL)
            f"{endpoint}/secretsmanager/get?secretId=prod%2Fdb", headers={TOKEN_HEADER: token}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            body = json.loads(resp.read())
        assert json.loads(body["SecretString"])["password"] == "second"
