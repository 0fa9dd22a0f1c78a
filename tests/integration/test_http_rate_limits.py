"""Row 8 of issue 12: work a request makes the source do is rate-limited and counted.

SSM calls are counted at the fault proxy in front of moto: what the account's quota would see.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from tests.support.agents import ssm_config
from tests.support.fault_proxy import FaultProxy
from tests.support.http_api import (
    ApiClient,
    http_section,
    metric_value,
    sdk_http_section,
    serving,
)

AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY000001/20261127/us-east-1/ssm/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "ab" * 32
)
SDK_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonSSM.GetParameter",
    "Authorization": AUTH,
}
BURST = 10
RATE = 1.0


async def sdk_get(client: ApiClient, name: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"Name": name, "WithDecryption": True})
    async with client.session.post(client.base + "/", headers=SDK_HEADERS, data=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_unknown_on_demand_names_cost_at_most_the_bucket(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/app/a", Value="a-value", Type="String")
    http = sdk_http_section(
        tmp_path,
        on_demand_prefixes=["/dyn"],
        on_demand_burst=BURST,
        on_demand_rate=RATE,
    )
    cfg = ssm_config(fault_proxy.url, [{"path": "/app"}], tmp_path, http=http)
    async with serving(cfg) as (_, client):
        before = fault_proxy.count("GetParameter")
        started = time.monotonic()
        with capture_logs() as logs:
            answers = await asyncio.gather(*(sdk_get(client, f"/dyn/nope-{i}") for i in range(100)))
        elapsed = time.monotonic() - started
        calls = fault_proxy.count("GetParameter") - before
        assert 0 < calls <= BURST + RATE * elapsed + 1
        throttled = [a for a in answers if a[1].get("__type") == "ThrottlingException"]
        # SSM's own shape, so SDKs back off and retry.
        assert throttled and all(a == (400, throttled[0][1]) for a in throttled)
        assert throttled[0][1]["message"] == "Rate exceeded"
        not_found = [a for a in answers if a[1].get("__type") == "ParameterNotFound"]
        assert len(throttled) + len(not_found) == 100
        text = (await client.get("/metrics", token=None)).text
        refused = metric_value(text, "ssm_sidecar_http_rate_limited_total", kind="on_demand")
        assert refused == len(throttled)
        # The refusals are logged, one line a second at most (the rest counted as suppressed).
        lines = [e for e in logs if e["event"] in ("rate_limited", "sdk_request_refused")]
        assert 1 <= len(lines) <= 2 * (elapsed + 1) * 2

        # The token routes share the bucket and answer 429.
        reply = await client.compat("/dyn/other")
        assert reply.status == 429 and reply.json()["__type"] == "ThrottlingException"


async def test_a_burst_of_refreshes_starts_at_most_the_bucket_of_cycles(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/app/a", Value="a-value", Type="String")
    http = http_section(tmp_path, refresh_burst=3, refresh_rate=0.5)
    cfg = ssm_config(fault_proxy.url, [{"path": "/app"}], tmp_path, http=http)
    async with serving(cfg) as (_, client):
        before = fault_proxy.count("GetParametersByPath")
        started = time.monotonic()
        replies = [await client.post("/v1/refresh") for _ in range(300)]
        elapsed = time.monotonic() - started
        cycles = fault_proxy.count("GetParametersByPath") - before  # one page per cycle here
        assert 1 <= cycles <= 3 + 0.5 * elapsed + 1
        codes = sorted({r.status for r in replies})
        assert codes == [200, 429]
        refused = [r for r in replies if r.status == 429]
        assert refused[0].json()["__type"] == "ThrottlingException"
        assert "retry in" in refused[0].json()["message"]
        text = (await client.get("/metrics", token=None)).text
        counted = metric_value(text, "ssm_sidecar_http_rate_limited_total", kind="refresh")
        assert counted == len(refused)
