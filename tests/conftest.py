"""Shared fixtures. Only the logging reset is autouse; unit tests never start moto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from tests.support.moto import DUMMY_AWS_ENV, MotoServer, boto3_client, start_moto_server

# No test, and no agent process a test starts, may reach the instance metadata service (a
# non-loopback address): the region resolver asks it when nothing else gives a region. Tests of
# that path point AWS_EC2_METADATA_SERVICE_ENDPOINT at a fake on 127.0.0.1 and re-enable it.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

# Make sure nothing in a moto-backed test can pick up real credentials or profiles.
_ISOLATED_AWS_ENV: dict[str, str | None] = {
    **DUMMY_AWS_ENV,
    "AWS_REGION": DUMMY_AWS_ENV["AWS_DEFAULT_REGION"],
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_ROLE_ARN": None,
    "AWS_WEB_IDENTITY_TOKEN_FILE": None,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    "AWS_ENDPOINT_URL": None,
    "AWS_ENDPOINT_URL_SSM": None,
    "AWS_ENDPOINT_URL_SECRETS_MANAGER": None,
    "AWS_ENDPOINT_URL_KMS": None,
}

if TYPE_CHECKING:  # aiohttp is imported only by tests that use the proxy
    from tests.support.fault_proxy import FaultProxy


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """structlog as it is before setup_logging(), around every test, so that no test inherits
    another's logging setup (e.g. a stream captured by capsys and closed since)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto_server subprocess for the whole session, with dummy AWS env vars set."""
    saved = {name: os.environ.get(name) for name in _ISOLATED_AWS_ENV}
    for name, value in _ISOLATED_AWS_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        server = start_moto_server()
        try:
            yield server
        finally:
            server.stop()
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@pytest.fixture
def moto_url(moto_server: MotoServer) -> str:
    """URL of a moto with no state left over from earlier tests."""
    moto_server.reset()
    return moto_server.url


@pytest.fixture
def ssm(moto_url: str) -> Iterator[Any]:
    """boto3 SSM client (us-east-1) on a clean moto, for seeding test data."""
    client = boto3_client("ssm", moto_url)
    yield client
    client.close()


@pytest.fixture
def secretsmanager(moto_url: str) -> Iterator[Any]:
    """boto3 Secrets Manager client (us-east-1) on a clean moto, for seeding test data."""
    client = boto3_client("secretsmanager", moto_url)
    yield client
    client.close()


@pytest.fixture
def kms_key_id(moto_url: str) -> str:
    """KeyId of a fresh customer-managed KMS key in moto."""
    client = boto3_client("kms", moto_url)
    try:
        key_id: str = client.create_key(Description="ssm-sidecar tests")["KeyMetadata"]["KeyId"]
    finally:
        client.close()
    return key_id


@pytest.fixture
def fault_proxy(moto_url: str) -> Iterator[FaultProxy]:
    """A started FaultProxy in front of a clean moto; faults cleared and proxy stopped after."""
    from tests.support.fault_proxy import FaultProxy

    proxy = FaultProxy(moto_url).start()
    try:
        yield proxy
    finally:
        proxy.clear_faults()
        proxy.stop()


if TYPE_CHECKING:
    from tests.support.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session."""
    from tests.support.redis import RedisServer

    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a running, empty redis-server (restarted if a test stopped it)."""
    if not redis_server.ping():
        redis_server.restart()
    redis_server.flush()
    return redis_server.url
