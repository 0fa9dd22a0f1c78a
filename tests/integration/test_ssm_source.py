"""The ssm source against a real SSM protocol (moto): correctness and the versions-first cost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.snapshot import Snapshot
from tests.support.agents import agent_for, ssm_config
from tests.support.fault_proxy import FaultProxy
from tests.support.waiting import async_wait_until


def _seed_mixed(ssm: Any, kms_key_id: str, n: int, path: str = "/app") -> dict[str, str]:
    """n parameters under path, a third each String, StringList, SecureString (customer key)."""
    values = {}
    for i in range(n):
        name = f"{path}/{'deep/' if i % 4 == 0 else ''}p{i:03d}"
        kind = ("String", "StringList", "SecureString")[i % 3]
        value = f"value-{i}" if kind != "StringList" else f"a{i},b{i}"
        extra = {"KeyId": kms_key_id} if kind == "SecureString" else {}
        ssm.put_parameter(Name=name, Value=value, Type=kind, **extra)
        values[name] = value
    return values


async def test_250_parameters_load_completely_and_correctly(
    ssm: Any, kms_key_id: str, moto_url: str, tmp_path: Path
) -> None:
    values = _seed_mixed(ssm, kms_key_id, 250)
    agent = agent_for(ssm_config(moto_url, [{"path": "/app"}], tmp_path))
    result = await agent.refresher.cycle()
    await agent.source.close()

    assert result.complete and not result.errors
    snap = agent.state.snapshot
    assert {p.name: p.value for p in snap} == values
    secret = snap.get("/app/p002")
    assert secret is not None and secret.type == "SecureString" and secret.value == "value-2"
    assert secret.encrypted_value is not None  # what SSM answers without decryption
    deep = snap.get("/app/deep/p000")
    assert deep is not None and deep.key == "deep/p000" and deep.version == 1
    assert deep.arn.endswith("parameter/app/deep/p000")
    listed = snap.get("/app/p001")
    assert listed is not None and listed.type == "StringList"


async def test_overwrite_picked_up_within_one_interval_and_delete_removes(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/app/a", Value="one", Type="String")
    ssm.put_parameter(Name="/app/b", Value="bee", Type="String")
    agent = agent_for(ssm_config(moto_url, [{"path": "/app"}], tmp_path, interval="500ms"))
    await agent.start()
    try:
        await async_wait_until(lambda: agent.state.ready, 10)
        ssm.put_parameter(Name="/app/a", Value="two", Type="String", Overwrite=True)
        changed_at = time.monotonic()

        def a_is_two() -> bool:
            p = agent.state.snapshot.get("/app/a")
            return p is not None and p.value == "two" and p.version == 2

        await async_wait_until(a_is_two, 5)
        # One interval (jitter 0 in tests), plus the first spread cycle <= one interval.
        assert time.monotonic() - changed_at < 2 * 0.5 + 0.5

        ssm.delete_parameter(Name="/app/b")
        await async_wait_until(lambda: agent.state.snapshot.get("/app/b") is None, 5)
        assert agent.state.snapshot.get("/app/a") is not None
    finally:
        await agent.stop()


async def test_pinned_version_and_label_resolve(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    for v in ("v1", "v2", "v3"):
        ssm.put_parameter(Name="/cfg/db", Value=v, Type="String", Overwrite=True)
    ssm.label_parameter_version(Name="/cfg/db", ParameterVersion=2, Labels=["stable"])
    ssm.put_parameter(Name="/other/x", Value="x1", Type="String")
    cfg = ssm_config(
        moto_url,
        [
            {"name": "/cfg/db", "version": 1, "alias": "db_v1"},
            {"name": "/other/x"},
        ],
        tmp_path,
    )
    agent = agent_for(cfg)
    await agent.refresher.cycle()
    p = agent.state.snapshot.get("/cfg/db")
    assert p is not None and (p.value, p.version, p.selector, p.key) == ("v1", 1, ":1", "db_v1")

    labelled = agent_for(ssm_config(moto_url, [{"name": "/cfg/db", "label": "stable"}], tmp_path))
    await labelled.refresher.cycle()
    q = labelled.state.snapshot.get("/cfg/db")
    assert q is not None and (q.value, q.version, q.selector, q.key) == (
        "v2",
        2,
        ":stable",
        "cfg/db",
    )
    await agent.source.close()
    await labelled.source.close()


async def test_missing_required_name_is_incomplete(ssm: Any, moto_url: str, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/here", Value="x", Type="String")
    cfg = ssm_config(moto_url, [{"name": "/here"}, {"name": "/not/here"}], tmp_path)
    agent = agent_for(cfg)
    result = await agent.refresher.cycle()
    await agent.source.close()
    assert not result.complete
    assert [e.subject for e in result.errors] == ["/not/here"]
    assert not agent.state.ready


async def test_secrets_manager_reference(moto_url: str, tmp_path: Path) -> None:
    from tests.support.moto import boto3_client

    sm = boto3_client("secretsmanager", moto_url)
    sm.create_secret(Name="db-creds", SecretString='{"user":"app"}')
    name = "/aws/reference/secretsmanager/db-creds"
    agent = agent_for(ssm_config(moto_url, [{"name": name, "alias": "db_creds"}], tmp_path))
    result = await agent.refresher.cycle()
    await agent.source.close()
    assert result.complete, result.errors
    p = agent.state.snapshot.get(name)
    assert p is not None and p.value == '{"user":"app"}' and p.key == "db_creds"


# --- the cost claim ----------------------------------------------------------------------------


def _seed_plain(ssm: Any, kms_key_id: str, n: int) -> None:
    for i in range(n):
        kind = "SecureString" if i % 2 else "String"
        extra = {"KeyId": kms_key_id} if kind == "SecureString" else {}
        ssm.put_parameter(Name=f"/cost/p{i:03d}", Value=f"v{i}", Type=kind, **extra)


@pytest.mark.parametrize(("n", "moto_extra_page"), [(120, 1), (119, 0)])
async def test_quiet_cycle_costs_ceil_n_over_10_calls_and_no_decryption(
    ssm: Any, kms_key_id: str, fault_proxy: FaultProxy, tmp_path: Path, n: int, moto_extra_page: int
) -> None:
    """120 parameters: 12 pages. moto answers the last *full* page with a NextToken and then an
    empty page (see shared/notes/test-backend.md), so against moto a multiple of ten costs one
    extra, empty page; the agent must fetch until there is no NextToken. 119 shows ceil(N/10)."""
    _seed_plain(ssm, kms_key_id, n)
    agent = agent_for(ssm_config(fault_proxy.url, [{"path": "/cost"}], tmp_path))
    first = await agent.refresher.cycle()
    assert first.complete and len(agent.state.snapshot) == n

    fault_proxy.reset_calls()
    quiet = await agent.refresher.cycle()
    assert quiet.complete and not quiet.change
    assert fault_proxy.count() == 12 + moto_extra_page
    assert fault_proxy.count("GetParametersByPath", with_decryption=False) == 12 + moto_extra_page
    assert fault_proxy.count(with_decryption=True) == 0

    ssm.put_parameter(
        Name="/cost/p001", Value="changed", Type="SecureString", KeyId=kms_key_id, Overwrite=True
    )
    fault_proxy.reset_calls()
    changed = await agent.refresher.cycle()
    assert [c.name for c in changed.change.updated] == ["/cost/p001"]
    assert fault_proxy.count() == 12 + moto_extra_page + 1
    assert fault_proxy.count("GetParameters", with_decryption=True) == 1
    p = agent.state.snapshot.get("/cost/p001")
    assert p is not None and p.value == "changed" and p.version == 2
    await agent.source.close()


async def test_names_are_listed_in_chunks_of_ten(
    ssm: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for i in range(23):
        ssm.put_parameter(Name=f"/n/p{i}", Value=f"v{i}", Type="String")
    entries: list[dict[str, Any]] = [{"name": f"/n/p{i}"} for i in range(23)]
    agent = agent_for(ssm_config(fault_proxy.url, entries, tmp_path))
    await agent.refresher.cycle()
    fault_proxy.reset_calls()
    await agent.refresher.cycle()
    sizes = [len(c.body["Names"]) for c in fault_proxy.calls()]
    assert sizes == [10, 10, 3]
    assert all(c.body["WithDecryption"] is False for c in fault_proxy.calls())
    assert len(agent.state.snapshot) == 23
    await agent.source.close()


async def test_snapshot_object_kept_when_nothing_changed(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/q/a", Value="x", Type="String")
    agent = agent_for(ssm_config(moto_url, [{"path": "/q"}], tmp_path))
    await agent.refresher.cycle()
    before: Snapshot = agent.state.snapshot
    await agent.refresher.cycle()
    assert agent.state.snapshot is before
    await agent.source.close()


async def test_role_arn_assumes_the_role_and_reads_with_its_credentials(
    ssm: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/x/a", Value="through-role", Type="String")
    cfg = ssm_config(moto_url, [{"path": "/x"}], tmp_path)
    source_cfg = cfg.source.model_copy(
        update={"role_arn": "arn:aws:iam::123456789012:role/reader", "external_id": "ext-1"}
    )
    agent = agent_for(cfg.model_copy(update={"source": source_cfg}))
    result = await agent.refresher.cycle()
    assert result.complete
    p = agent.state.snapshot.get("/x/a")
    assert p is not None and p.value == "through-role"
    creds = await agent.source._session.get_credentials()  # type: ignore[attr-defined]
    frozen = await creds.get_frozen_credentials()
    assert creds.method == "sts-assume-role"
    assert frozen.access_key != "testing" and frozen.token
    await agent.source.close()
