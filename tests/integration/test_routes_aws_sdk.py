"""boto3, unmodified, pointed at the agent answers like boto3 pointed at SSM (moto).

The agent runs in-process on its own event loop thread (boto3 is synchronous), its source goes
through the fault proxy so every call it makes to moto is counted; the reference client talks to
moto directly and is never counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from agent.app import Agent
from agent.config import Config
from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy
from tests.support.http_api import sdk_http_section
from tests.support.moto import boto3_client
from tests.support.waiting import wait_until

NO_RETRIES = BotoConfig(retries={"mode": "standard", "total_max_attempts": 1})


@contextmanager
def agent_thread(cfg: Config) -> Iterator[Agent]:
    """The agent on an event loop of its own, ready; stopped on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="agent-loop", daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def build() -> Agent:
        return agent_for(cfg)

    agent: Agent = run(build())
    try:
        run(agent.start())
        wait_until(lambda: agent.state.ready, 15, what="agent ready")
        yield agent
    finally:
        run(agent.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def agent_url(cfg: Config) -> str:
    return f"http://{cfg.http.listen}"


def strip(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def without_selector(response: dict[str, Any]) -> dict[str, Any]:
    """moto omits `Selector`; SSM (and the agent) echo it for a `name:3` / `name:label` request."""
    return {
        **response,
        "Parameter": {k: v for k, v in response["Parameter"].items() if k != "Selector"},
    }


@pytest.fixture
def seeded(ssm: Any, kms_key_id: str) -> Any:
    ssm.put_parameter(Name="/app/plain", Value="plain value", Type="String")
    ssm.put_parameter(Name="/app/list", Value="a,b,c", Type="StringList")
    ssm.put_parameter(
        Name="/app/secret", Value="s3cr3t-value", Type="SecureString", KeyId=kms_key_id
    )
    for i in range(1, 4):
        ssm.put_parameter(Name="/app/versioned", Value=f"v{i}", Type="String", Overwrite=True)
    for i in range(1, 3):
        ssm.put_parameter(Name="/pinned/db", Value=f"db v{i}", Type="String", Overwrite=True)
    ssm.label_parameter_version(Name="/pinned/db", ParameterVersion=1, Labels=["stable"])
    return ssm


def app_config(
    fault_proxy: FaultProxy, tmp_path: Path, *, interval: str = "30s", **http: Any
) -> Config:
    return ssm_config(
        fault_proxy.url,
        [{"path": "/app"}, {"name": "/pinned/db", "label": "stable"}],
        tmp_path,
        interval=interval,
        http=sdk_http_section(tmp_path, **http),
    )


def test_get_parameter_answers_like_ssm(
    seeded: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    cfg = app_config(fault_proxy, tmp_path)
    with agent_thread(cfg):
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        cases: list[dict[str, Any]] = [
            {"Name": "/app/plain"},
            {"Name": "/app/list"},
            {"Name": "/app/secret", "WithDecryption": True},
            # Without decryption SSM answers the stored (encrypted) form; the agent answers what
            # its listing got, so against moto both are moto's "kms:<key>:<plaintext>".
            {"Name": "/app/secret", "WithDecryption": False},
            {"Name": "/app/secret"},
            {"Name": "/app/versioned"},
        ]
        for kwargs in cases:
            assert strip(ours.get_parameter(**kwargs)) == strip(seeded.get_parameter(**kwargs))
        selected = [
            ("/app/versioned:3", ":3"),  # the version the agent holds
            ("/pinned/db:stable", ":stable"),  # the label it was configured with
            ("/pinned/db:1", ":1"),  # that label's version
        ]
        for name, selector in selected:
            got = strip(ours.get_parameter(Name=name))
            assert got["Parameter"]["Selector"] == selector
            assert without_selector(got) == strip(seeded.get_parameter(Name=name))
        by_arn = seeded.get_parameter(Name="/app/plain")["Parameter"]["ARN"]
        assert strip(ours.get_parameter(Name=by_arn)) == strip(seeded.get_parameter(Name=by_arn))
        ours.close()


def test_get_parameters_mixed_known_and_unknown(
    seeded: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    cfg = app_config(fault_proxy, tmp_path)
    names = ["/app/plain", "/nope/one", "/app/secret", "/app/list", "/app/nothing"]
    with agent_thread(cfg):
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        for decrypt in (True, False):
            got = strip(ours.get_parameters(Names=names, WithDecryption=decrypt))
            want = strip(seeded.get_parameters(Names=names, WithDecryption=decrypt))
            # moto returns found parameters in set() order; the agent in request order.
            assert got["Parameters"] == sorted(
                want["Parameters"], key=lambda p: names.index(p["Name"])
            )
            assert (
                got["InvalidParameters"]
                == want["InvalidParameters"]
                == ["/nope/one", "/app/nothing"]
            )
        got = strip(ours.get_parameters(Names=["/app/versioned:3", "/pinned/db:stable"]))
        want = strip(seeded.get_parameters(Names=["/app/versioned:3", "/pinned/db:stable"]))
        assert [p.pop("Selector") for p in got["Parameters"]] == [":3", ":stable"]
        assert sorted(got["Parameters"], key=lambda p: p["Name"]) == sorted(
            want["Parameters"], key=lambda p: p["Name"]
        )
        # Version 2 exists in SSM while the agent holds version 3: fetched, as SSM answers it.
        got = strip(ours.get_parameters(Names=["/app/versioned:2"]))
        assert [p.pop("Selector") for p in got["Parameters"]] == [":2"]
        assert got == strip(seeded.get_parameters(Names=["/app/versioned:2"]))
        ours.close()


def test_paginator_over_250_parameters(ssm: Any, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    names = sorted(f"/big/n{i % 4}/p{i:03d}" if i % 5 else f"/big/p{i:03d}" for i in range(250))
    # moto lists in insertion order, the agent (like SSM's usual answer) by name: insert sorted.
    for i, name in enumerate(names):
        kind = "SecureString" if i % 7 == 0 else "String"
        ssm.put_parameter(Name=name, Value=f"value {i}", Type=kind)
    cfg = ssm_config(fault_proxy.url, [{"path": "/big"}], tmp_path, http=sdk_http_section(tmp_path))
    with agent_thread(cfg):
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        for kwargs in (
            {"Path": "/big", "Recursive": True, "WithDecryption": True},
            {"Path": "/big", "Recursive": True},
            {"Path": "/big/", "Recursive": False, "WithDecryption": True},
            {"Path": "/big/n2", "Recursive": False},
            {
                "Path": "/big",
                "Recursive": True,
                "ParameterFilters": [
                    {"Key": "Type", "Option": "Equals", "Values": ["SecureString"]}
                ],
            },
        ):
            pages = list(ours.get_paginator("get_parameters_by_path").paginate(**kwargs))
            reference = list(ssm.get_paginator("get_parameters_by_path").paginate(**kwargs))
            got = [p for page in pages for p in page["Parameters"]]
            want = [p for page in reference for p in page["Parameters"]]
            assert got == want and got, kwargs
            # moto answers a last full page with a NextToken and then an empty page; the agent
            # sends a NextToken only when more parameters follow.
            assert len(pages) == -(-len(got) // 10)
        everything = ours.get_paginator("get_parameters_by_path").paginate(
            Path="/big", Recursive=True, PaginationConfig={"PageSize": 7}
        )
        assert [p["Name"] for page in everything for p in page["Parameters"]] == names
        ours.close()


def test_describe_parameters_lists_metadata_without_values(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for i in range(23):
        kind = ("String", "StringList", "SecureString")[i % 3]
        ssm.put_parameter(Name=f"/desc/p{i:02d}", Value=f"value-{i}", Type=kind)
    cfg = ssm_config(
        fault_proxy.url, [{"path": "/desc"}], tmp_path, http=sdk_http_section(tmp_path)
    )
    with agent_thread(cfg):
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        pages = list(ours.get_paginator("describe_parameters").paginate())
        got = [p for page in pages for p in page["Parameters"]]
        want = [
            p
            for page in ssm.get_paginator("describe_parameters").paginate()
            for p in page["Parameters"]
        ]
        assert [p["Name"] for p in got] == [p["Name"] for p in want]
        # moto omits ARN here and adds KeyId / LastModifiedUser, which the agent cannot know:
        # compare the fields both send, and the ARN with what GetParameter says.
        shared = ("Name", "Type", "Version", "LastModifiedDate", "DataType", "Tier")
        for mine, theirs in zip(got, want, strict=True):
            assert {k: mine[k] for k in shared} == {k: theirs[k] for k in shared}
            assert mine["ARN"] == ssm.get_parameter(Name=mine["Name"])["Parameter"]["ARN"]
            assert mine["Policies"] == []
            assert not any("value-" in str(v) for v in mine.values())
        # moto ignores MaxResults (pages of 10); the agent honours it.
        small = ours.describe_parameters(MaxResults=5)
        assert [p["Name"] for p in small["Parameters"]] == [f"/desc/p{i:02d}" for i in range(5)]
        secure = ours.describe_parameters(
            ParameterFilters=[{"Key": "Type", "Values": ["SecureString"]}]
        )["Parameters"]
        assert [p["Name"] for p in secure] == [f"/desc/p{i:02d}" for i in range(2, 23, 3)]
        ours.close()


def test_not_found_and_writes_never_reach_ssm(
    seeded: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    cfg = app_config(fault_proxy, tmp_path)
    with agent_thread(cfg):
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        before = len(fault_proxy.calls())
        with pytest.raises(ours.exceptions.ParameterNotFound) as missing:
            ours.get_parameter(Name="/app/does-not-exist")
        assert (
            missing.value.response["Error"]["Message"] == "Parameter /app/does-not-exist not found."
        )
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert missing.value.response["ResponseMetadata"]["RequestId"]
        with pytest.raises(ClientError) as write:
            ours.put_parameter(Name="/app/new", Value="new value", Type="String")
        error = write.value.response["Error"]
        assert error["Code"] == "AccessDeniedException"
        assert "read-only" in error["Message"] and "second client" in error["Message"]
        with pytest.raises(ClientError) as delete:
            ours.delete_parameter(Name="/app/plain")
        assert delete.value.response["Error"]["Code"] == "AccessDeniedException"
        with pytest.raises(ClientError) as other:
            ours.get_parameter_history(Name="/app/plain")
        assert other.value.response["Error"]["Code"] == "UnknownOperationException"
        # Nothing of the above reached moto: no call at the proxy, nothing written or deleted.
        assert len(fault_proxy.calls()) == before
        assert fault_proxy.count("PutParameter") == fault_proxy.count("DeleteParameter") == 0
        with pytest.raises(seeded.exceptions.ParameterNotFound):
            seeded.get_parameter(Name="/app/new")
        assert seeded.get_parameter(Name="/app/plain")["Parameter"]["Value"] == "plain value"
        ours.close()


def test_on_demand_names_are_fetched_once(
    seeded: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    seeded.put_parameter(Name="/lazy/token", Value="lazy value", Type="SecureString")
    cfg = app_config(fault_proxy, tmp_path, on_demand_prefixes=["/lazy", "/pinned"])
    with agent_thread(cfg):
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        for _ in range(3):
            got = strip(ours.get_parameter(Name="/lazy/token", WithDecryption=True))
            assert got == strip(seeded.get_parameter(Name="/lazy/token", WithDecryption=True))
        # Fetched once (a SecureString: without, then with decryption), then kept.
        assert fault_proxy.count("GetParameter") == 2
        # A pinned parameter does not answer "latest": with its prefix on demand, SSM does.
        latest = strip(ours.get_parameter(Name="/pinned/db"))
        assert latest == strip(seeded.get_parameter(Name="/pinned/db"))
        assert latest["Parameter"]["Version"] == 2
        with pytest.raises(ours.exceptions.ParameterNotFound):
            ours.get_parameter(Name="/lazy/missing")
        ours.close()


def test_served_reads_make_no_call_and_values_stay_current(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for i in range(15):
        ssm.put_parameter(Name=f"/live/p{i:02d}", Value=f"value {i}", Type="String")
    cfg = ssm_config(
        fault_proxy.url,
        [{"path": "/live"}],
        tmp_path,
        interval="500ms",
        http=sdk_http_section(tmp_path),
    )
    with agent_thread(cfg) as agent:
        ours = boto3_client("ssm", agent_url(cfg), config=NO_RETRIES)
        own = agent.metrics.source_requests.labels("GetParametersByPath", "ok")
        proxy_before, own_before = len(fault_proxy.calls()), own._value.get()
        for _ in range(20):
            ours.get_parameter(Name="/live/p03")
            ours.get_parameters(Names=["/live/p01", "/live/p02"])
            list(ours.get_paginator("get_parameters_by_path").paginate(Path="/live"))
            ours.describe_parameters()
        proxy_delta = len(fault_proxy.calls()) - proxy_before
        own_delta = own._value.get() - own_before
        # Every call moto saw is one of the agent's own polls (one may be in flight at either
        # end); 20 x 5 SDK calls leaking through would show as 100 more.
        assert proxy_delta <= own_delta + 1
        assert {c.operation for c in fault_proxy.calls()} == {"GetParametersByPath"}

        ssm.put_parameter(Name="/live/p03", Value="changed", Type="String", Overwrite=True)
        started = time.monotonic()
        wait_until(
            lambda: ours.get_parameter(Name="/live/p03")["Parameter"]["Value"] == "changed",
            timeout=5,
            what="the new value served",
        )
        assert time.monotonic() - started < 3.0  # a few 500ms intervals, on a busy machine
        assert strip(ours.get_parameter(Name="/live/p03")) == strip(
            ssm.get_parameter(Name="/live/p03")
        )
        ours.close()
