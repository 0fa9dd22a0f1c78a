"""The proxy's faithful-KMS mode and the redis-server fixture that the fleet tests stand on."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fault_proxy import FaultProxy, split_moto_secure_value
from tests.support.moto import boto3_client
from tests.support.redis import RedisServer

ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/app/secret"


@pytest.fixture
def kms_proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url, faithful_kms=True) as proxy:
        yield proxy


def test_split_moto_value_with_alias_uuid_and_arn_key_ids() -> None:
    assert split_moto_secure_value("kms:alias/aws/ssm:a:b") == ("alias/aws/ssm", "a:b")
    arn = "arn:aws:kms:us-east-1:123456789012:key/k-1"
    assert split_moto_secure_value(f"kms:{arn}:x:y") == (arn, "x:y")


def test_secure_string_without_decryption_is_a_kms_ciphertext(
    ssm: Any, kms_proxy: FaultProxy, kms_key_id: str
) -> None:
    ssm.put_parameter(
        Name="/app/secret", Value="s3cret:value", Type="SecureString", KeyId=kms_key_id
    )
    ssm.put_parameter(Name="/app/plain", Value="hello", Type="String")
    client = boto3_client("ssm", kms_proxy.url)
    kms = boto3_client("kms", kms_proxy.url)
    try:
        listed = client.get_parameters_by_path(Path="/app", WithDecryption=False)["Parameters"]
        by_name = {p["Name"]: p["Value"] for p in listed}
        assert by_name["/app/plain"] == "hello"
        cipher = by_name["/app/secret"]
        assert "s3cret" not in cipher and not cipher.startswith("kms:")
        again = client.get_parameter(Name="/app/secret")["Parameter"]["Value"]
        assert again == cipher  # one ciphertext per version, as AWS keeps it
        blob = base64.b64decode(cipher)
        out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": ARN})
        assert out["Plaintext"] == b"s3cret:value"
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": ARN + "x"})
        # With decryption: the plaintext, untouched.
        value = client.get_parameter(Name="/app/secret", WithDecryption=True)["Parameter"]["Value"]
        assert value == "s3cret:value"
    finally:
        client.close()
        kms.close()


def test_default_aws_ssm_key_is_encrypted_too(ssm: Any, kms_proxy: FaultProxy) -> None:
    ssm.put_parameter(Name="/app/secret", Value="v", Type="SecureString")
    client = boto3_client("ssm", kms_proxy.url)
    try:
        value = client.get_parameters(Names=["/app/secret"])["Parameters"][0]["Value"]
    finally:
        client.close()
    assert not value.startswith("kms:")


def test_redis_fixture_is_empty_and_survives_a_restart(
    redis_server: RedisServer, redis_url: str
) -> None:
    assert redis_server.command("SET", "k", "v").startswith(b"+OK")
    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.command("DBSIZE") == b":0\r\n"
