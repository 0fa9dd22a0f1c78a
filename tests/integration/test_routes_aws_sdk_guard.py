"""The guard of `POST /`: what is refused, how, and that refusals are counted and leak nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from agent.config import Config
from tests.support.agents import ssm_config
from tests.support.http_api import (
    ApiClient,
    metric_value,
    sdk_http_section,
    serving,
)
from tests.support.moto import REGION

SECRET = "guarded-s3cret-value"
SIGNATURE = "0123456789abcdef" * 4
AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY000001/20261127/us-east-1/ssm/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={SIGNATURE}"
)
SDK_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonSSM.GetParameter",
    "Authorization": AUTH,
}
BODY = '{"Name": "/guard/secret", "WithDecryption": true}'


def config(moto_url: str, tmp_path: Path, **http: Any) -> Config:
    return ssm_config(
        moto_url, [{"path": "/guard"}], tmp_path, http=sdk_http_section(tmp_path, **http)
    )


async def post(client: ApiClient, headers: dict[str, str], body: str = BODY) -> Any:
    async with client.session.post(client.base + "/", headers=headers, data=body) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


async def test_only_sigv4_signed_loopback_requests_are_answered(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/guard/secret", Value=SECRET, Type="SecureString")
    async with serving(config(moto_url, tmp_path)) as (_, client):
        status, headers, body = await post(client, SDK_HEADERS)
        assert status == 200 and body["Parameter"]["Value"] == SECRET
        assert headers["Content-Type"] == "application/x-amz-json-1.1"
        assert len(headers["x-amzn-RequestId"]) == 36

        refused: list[tuple[dict[str, str], int, str]] = [
            (
                {k: v for k, v in SDK_HEADERS.items() if k != "Authorization"},
                403,
                "MissingAuthenticationTokenException",
            ),
            ({**SDK_HEADERS, "Authorization": "Bearer abc"}, 403, "IncompleteSignatureException"),
            (
                {**SDK_HEADERS, "Authorization": AUTH.replace(SIGNATURE, "zz")},
                403,
                "IncompleteSignatureException",
            ),
            ({**SDK_HEADERS, "X-Forwarded-For": "203.0.113.7"}, 400, "ValidationException"),
            ({**SDK_HEADERS, "Forwarded": "for=203.0.113.7"}, 400, "ValidationException"),
            # A DNS-rebinding page reaches 127.0.0.1 under its own host name.
            ({**SDK_HEADERS, "Host": "rebind.attacker.example:2773"}, 403, "AccessDeniedException"),
            ({**SDK_HEADERS, "Content-Type": "text/plain"}, 400, "ValidationException"),
            (
                {**SDK_HEADERS, "X-Amz-Target": "TrentService.Decrypt"},
                400,
                "UnknownOperationException",
            ),
            (
                {k: v for k, v in SDK_HEADERS.items() if k != "X-Amz-Target"},
                400,
                "UnknownOperationException",
            ),
        ]
        with capture_logs() as logs:
            for headers_sent, want_status, want_code in refused:
                status, headers, body = await post(client, headers_sent)
                assert (status, body["__type"]) == (want_status, want_code), headers_sent
                assert SECRET not in str(body)
            status, _, body = await post(client, SDK_HEADERS, body="{not json")
            assert (status, body["__type"]) == (400, "SerializationException")
        assert logs and SECRET not in str(logs)

        # A browser's CORS preflight gets no CORS headers: the cross-origin POST is never sent.
        preflight_headers = {
            "Origin": "https://attacker.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,x-amz-target",
        }
        async with client.session.options(client.base + "/", headers=preflight_headers) as resp:
            assert resp.status == 405
            assert not any(h.lower().startswith("access-control-") for h in resp.headers)

        metrics = (await client.get("/metrics")).text
        count = metric_value
        assert count(metrics, "ssm_sidecar_http_requests_total", route="/", code="200") == 1
        assert count(metrics, "ssm_sidecar_http_requests_total", route="/", code="403") == 4
        assert count(metrics, "ssm_sidecar_http_requests_total", route="/", code="400") == 6


async def test_access_key_allow_list(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/guard/secret", Value=SECRET, Type="SecureString")
    allowed = "AKIAAPPKEYEXAMPLE001"
    cfg = config(moto_url, tmp_path, sdk_access_key_ids=[allowed])
    async with serving(cfg):
        url = f"http://{cfg.http.listen}"
        session = get_session()
        async with session.create_client(
            "ssm",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id=allowed,
            aws_secret_access_key="anything",
        ) as app:
            got = await app.get_parameter(Name="/guard/secret", WithDecryption=True)
            assert got["Parameter"]["Value"] == SECRET
        async with session.create_client(
            "ssm",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="AKIAOTHERKEYEXAMPLE9",
            aws_secret_access_key="anything",
        ) as other:
            with pytest.raises(ClientError) as denied:
                await other.get_parameter(Name="/guard/secret", WithDecryption=True)
        error = denied.value.response["Error"]
        assert error["Code"] == "AccessDeniedException"
        assert "AKIAOTHERKEYEXAMPLE9" in error["Message"] and SECRET not in error["Message"]


async def test_unix_socket_listener_answers_without_host_check(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/guard/secret", Value=SECRET, Type="SecureString")
    cfg = ssm_config(
        moto_url,
        [{"path": "/guard"}],
        tmp_path,
        http={
            **sdk_http_section(tmp_path),
            "listen": f"unix:{tmp_path / 'run' / 'agent.sock'}",
        },
    )
    async with serving(cfg) as (_, client):
        status, _, body = await post(client, {**SDK_HEADERS, "Host": "anything.example"})
        assert status == 200 and body["Parameter"]["Value"] == SECRET
        status, _, body = await post(client, {**SDK_HEADERS, "Authorization": ""})
        assert (status, body["__type"]) == (403, "MissingAuthenticationTokenException")
