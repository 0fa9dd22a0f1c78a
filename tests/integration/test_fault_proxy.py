"""The fault proxy forwards to moto and injects faults that real botocore clients recognise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tests.support.fault_proxy import RESET_STATUS, FaultProxy
from tests.support.moto import boto3_client

NO_RETRIES = Config(retries={"total_max_attempts": 1})


@pytest.fixture
def client(fault_proxy: FaultProxy, ssm: Any) -> Iterator[Any]:
    """boto3 SSM client through the proxy, without retries; moto seeded with two parameters."""
    ssm.put_parameter(Name="/app/plain", Value="hello", Type="String")
    ssm.put_parameter(Name="/app/secret", Value="s3cr3t", Type="SecureString")
    proxied = boto3_client("ssm", fault_proxy.url, config=NO_RETRIES)
    yield proxied
    proxied.close()


def error_code(exc: ClientError) -> str:
    code: str = exc.response["Error"]["Code"]
    return code


def test_forwards_and_counts_per_operation(fault_proxy: FaultProxy, client: Any) -> None:
    response = client.get_parameter(Name="/app/plain")
    assert response["Parameter"]["Value"] == "hello"
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert response["ResponseMetadata"]["RequestId"]

    secret = client.get_parameter(Name="/app/secret", WithDecryption=True)
    assert secret["Parameter"]["Value"] == "s3cr3t"
    listed = client.get_parameters_by_path(Path="/app", WithDecryption=True)
    assert {p["Name"] for p in listed["Parameters"]} == {"/app/plain", "/app/secret"}
    with pytest.raises(ClientError) as missing:
        client.get_parameter(Name="/app/missing")
    assert error_code(missing.value) == "ParameterNotFound"

    assert fault_proxy.count() == 4
    assert fault_proxy.count("GetParameter") == 3
    assert fault_proxy.count("GetParametersByPath") == 1
    assert fault_proxy.count(with_decryption=True) == 2
    assert fault_proxy.count("GetParameter", with_decryption=False) == 2
    calls = fault_proxy.calls()
    assert [c.operation for c in calls] == [
        "GetParameter",
        "GetParameter",
        "GetParametersByPath",
        "GetParameter",
    ]
    assert calls[0].body == {"Name": "/app/plain"}
    assert [c.status for c in calls] == [200, 200, 200, 400]
    assert not any(c.faulted for c in calls)
    assert calls == sorted(calls, key=lambda c: c.at)

    fault_proxy.reset_calls()
    assert fault_proxy.count() == 0


def test_throttle_surfaces_as_throttling_exception(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.add_fault("GetParametersByPath", "throttle")

    with pytest.raises(ClientError) as raised:
        client.get_parameters_by_path(Path="/app")
    assert error_code(raised.value) == "ThrottlingException"
    assert raised.value.response["Error"]["Message"] == "Rate exceeded"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raised.value.response["ResponseMetadata"]["RequestId"]

    # Other operations are untouched.
    assert client.get_parameter(Name="/app/plain")["Parameter"]["Value"] == "hello"
    assert fault_proxy.count("GetParametersByPath") == 1
    assert fault_proxy.count("GetParametersByPath", include_faulted=False) == 0
    [throttled] = [c for c in fault_proxy.calls() if c.faulted]
    assert (throttled.operation, throttled.status) == ("GetParametersByPath", 400)

    fault_proxy.clear_faults()
    assert len(client.get_parameters_by_path(Path="/app")["Parameters"]) == 2


def test_match_restricts_fault_to_one_name(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.add_fault(
        None, "error", code="AccessDeniedException", message="not allowed", match="/app/secret"
    )

    with pytest.raises(ClientError) as raised:
        client.get_parameter(Name="/app/secret", WithDecryption=True)
    assert error_code(raised.value) == "AccessDeniedException"
    assert raised.value.response["Error"]["Message"] == "not allowed"
    assert client.get_parameter(Name="/app/plain")["Parameter"]["Value"] == "hello"
    assert fault_proxy.count(include_faulted=False) == 1


def test_times_limits_how_often_a_fault_applies(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.add_fault("GetParameter", "throttle", times=2)

    outcomes = []
    for _ in range(4):
        try:
            client.get_parameter(Name="/app/plain")
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(error_code(exc))
    assert outcomes == ["ThrottlingException", "ThrottlingException", "ok", "ok"]
    assert fault_proxy.count("GetParameter", include_faulted=False) == 2


def test_kms_error_code_is_passed_through(
    fault_proxy: FaultProxy, client: Any, ssm: Any, kms_key_id: str
) -> None:
    ssm.put_parameter(Name="/app/cmk", Value="v1", Type="SecureString", KeyId=kms_key_id)
    assert client.get_parameter(Name="/app/cmk", WithDecryption=True)["Parameter"]["Value"] == "v1"

    fault_proxy.add_fault(
        "GetParameter", "error", code="KMSAccessDeniedException", message="kms says no"
    )
    with pytest.raises(ClientError) as raised:
        client.get_parameter(Name="/app/cmk", WithDecryption=True)
    assert error_code(raised.value) == "KMSAccessDeniedException"


def test_status_503_surfaces_as_error(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.add_fault("GetParameter", "status", status=503)

    with pytest.raises(ClientError) as raised:
        client.get_parameter(Name="/app/plain")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error_code(raised.value) == "InternalServerError"
    assert fault_proxy.calls()[-1].status == 503


def test_reset_surfaces_as_connection_error(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.add_fault("GetParameter", "reset", times=1)

    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client.get_parameter(Name="/app/plain")
    [call] = fault_proxy.calls()
    assert (call.faulted, call.status) == (True, RESET_STATUS)

    # The proxy keeps serving after dropping a connection.
    assert client.get_parameter(Name="/app/plain")["Parameter"]["Value"] == "hello"


def test_delay_then_forward(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.add_fault("GetParameter", "delay", delay=0.3, times=1)
    started = time.monotonic()
    assert client.get_parameter(Name="/app/plain")["Parameter"]["Value"] == "hello"
    assert time.monotonic() - started >= 0.3
    assert fault_proxy.calls()[-1].faulted is False

    impatient = boto3_client(
        "ssm", fault_proxy.url, config=Config(retries={"total_max_attempts": 1}, read_timeout=0.2)
    )
    fault_proxy.add_fault("GetParameter", "delay", delay=1.0, times=1)
    with pytest.raises(ReadTimeoutError):
        impatient.get_parameter(Name="/app/plain")
    impatient.close()


def test_rate_limit_throttles_above_the_rate(fault_proxy: FaultProxy, client: Any) -> None:
    fault_proxy.set_rate_limit(5.0, burst=3)

    started = time.monotonic()
    outcomes = []
    for _ in range(10):
        try:
            client.get_parameter(Name="/app/plain")
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(error_code(exc))
    elapsed = time.monotonic() - started

    allowed = outcomes.count("ok")
    assert outcomes[:3] == ["ok", "ok", "ok"]
    assert allowed <= 3 + int(elapsed * 5.0) + 1
    assert outcomes.count("ThrottlingException") == 10 - allowed
    assert fault_proxy.count(include_faulted=False) == allowed

    fault_proxy.set_rate_limit(None)
    assert client.get_parameter(Name="/app/plain")["Parameter"]["Value"] == "hello"


def test_context_manager_and_wait_for_count(moto_url: str) -> None:
    with FaultProxy(moto_url) as proxy:
        kms = boto3_client("kms", proxy.url, config=NO_RETRIES)
        kms.list_keys()
        assert proxy.wait_for_count(1, "ListKeys", timeout=1.0) == 1
        with pytest.raises(TimeoutError):
            proxy.wait_for_count(2, timeout=0.05)
        kms.close()
    with pytest.raises(RuntimeError):
        _ = proxy.url


async def test_aiobotocore_sees_throttle_and_reset(fault_proxy: FaultProxy, client: Any) -> None:
    from aiobotocore.session import get_session

    fault_proxy.add_fault("GetParameter", "throttle", times=1)
    fault_proxy.add_fault("GetParameter", "reset", times=1)
    session = get_session()
    async with session.create_client(
        "ssm", region_name="us-east-1", endpoint_url=fault_proxy.url, config=NO_RETRIES
    ) as aio:
        with pytest.raises(ClientError) as raised:
            await aio.get_parameter(Name="/app/plain")
        assert error_code(raised.value) == "ThrottlingException"
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            await aio.get_parameter(Name="/app/plain")
        response = await aio.get_parameter(Name="/app/secret", WithDecryption=True)
        assert response["Parameter"]["Value"] == "s3cr3t"
    assert fault_proxy.count("GetParameter", include_faulted=False) == 1
