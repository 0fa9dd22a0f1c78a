"""The Secrets Manager source against moto's Secrets Manager: what it loads, what it costs,
and what a failure of one secret (or of the whole service) leaves served."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from agent.snapshot import Secret
from tests.support.agents import agent_for
from tests.support.fault_proxy import FaultProxy
from tests.support.secrets import secrets_config, seed_db_secret

LISTING = "ListSecrets"
FETCHES = ("BatchGetSecretValue", "GetSecretValue")


def held(agent: Any, ident: str) -> Secret:
    s = agent.state.snapshot.secrets.get(ident)
    assert s is not None, f"{ident} not held: {sorted(agent.state.snapshot.secrets)}"
    return s  # type: ignore[no-any-return]


def fetch_calls(proxy: FaultProxy) -> int:
    return sum(proxy.count(op) for op in FETCHES)


async def test_string_binary_by_id_arn_prefix_stage_and_version(
    secretsmanager: Any, moto_url: str, tmp_path: Path
) -> None:
    fields = seed_db_secret(secretsmanager)
    first = secretsmanager.describe_secret(SecretId="prod/db")
    first_version = next(iter(first["VersionIdsToStages"]))
    rotated = json.dumps({**fields, "password": "rotated"})
    secretsmanager.put_secret_value(SecretId="prod/db", SecretString=rotated)
    binary = secretsmanager.create_secret(Name="prod/cert", SecretBinary=b"\x00\x01\xffcert")
    secretsmanager.create_secret(Name="shared/a", SecretString="alpha")
    secretsmanager.create_secret(Name="shared/b", SecretString="beta")
    secretsmanager.create_secret(Name="sharedx/c", SecretString="not under shared/")

    cfg = secrets_config(
        moto_url,
        [
            {"id": "prod/db", "alias": "db"},
            {"id": "prod/db", "version_stage": "AWSPREVIOUS", "alias": "db_previous"},
            {"id": "prod/db", "version_id": first_version, "alias": "db_first"},
            {"id": binary["ARN"], "alias": "cert"},
            {"prefix": "shared/"},
        ],
        tmp_path,
    )
    agent = agent_for(cfg)
    result = await agent.refresher.cycle()
    await agent.source.close()

    assert result.complete and not result.errors, result.errors
    current = held(agent, "prod/db")
    assert current.string == rotated and current.key == "db"
    assert current.version_stages == ("AWSCURRENT",)
    previous = held(agent, "prod/db|stage:AWSPREVIOUS")
    assert previous.string == json.dumps(fields) and previous.version_id == first_version
    assert previous.version_stages == ("AWSPREVIOUS",)
    pinned = held(agent, f"prod/db|version:{first_version}")
    assert pinned.string == json.dumps(fields) and pinned.key == "db_first"
    cert = held(agent, "prod/cert")
    assert cert.binary == b"\x00\x01\xffcert" and cert.string is None and cert.arn == binary["ARN"]
    assert held(agent, "shared/a").string == "alpha" and held(agent, "shared/a").key == "shared/a"
    assert held(agent, "shared/b").string == "beta"
    assert "sharedx/c" not in agent.state.snapshot.secrets
    assert current.metadata["Name"] == "prod/db"
    assert set(current.metadata["VersionIdsToStages"]) == {first_version, current.version_id}


@pytest.mark.parametrize("count", [100, 150])
async def test_quiet_cycle_lists_only_and_one_rotation_costs_one_fetch(
    secretsmanager: Any, fault_proxy: FaultProxy, tmp_path: Path, count: int
) -> None:
    """Acceptance 2: S secrets, no change -> ceil(S/100) listing calls and no fetch at all;
    one rotated secret -> exactly one more fetch call."""
    for i in range(count):
        secretsmanager.create_secret(Name=f"fleet/s{i:04d}", SecretString=f"value-{i}")
    agent = agent_for(secrets_config(fault_proxy.url, [{"prefix": "fleet/"}], tmp_path))
    first = await agent.refresher.cycle()
    assert first.complete and len(agent.state.snapshot.secrets) == count
    assert fault_proxy.count("BatchGetSecretValue") == math.ceil(count / 20)

    fault_proxy.reset_calls()
    quiet = await agent.refresher.cycle()
    assert not quiet.change
    print(f"S={count}: quiet cycle {fault_proxy.count(LISTING)} ListSecrets calls")
    assert fault_proxy.count(LISTING) == math.ceil(count / 100)
    assert fetch_calls(fault_proxy) == 0 and fault_proxy.count() == fault_proxy.count(LISTING)

    secretsmanager.put_secret_value(SecretId="fleet/s0007", SecretString="rotated")
    fault_proxy.reset_calls()
    rotated = await agent.refresher.cycle()
    assert [c.name for c in rotated.change.secrets] == ["fleet/s0007"]
    assert fault_proxy.count(LISTING) == math.ceil(count / 100)
    assert fetch_calls(fault_proxy) == 1
    assert held(agent, "fleet/s0007").string == "rotated"
    await agent.source.close()


async def test_named_secrets_are_listed_ten_names_a_call(
    secretsmanager: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for i in range(25):
        secretsmanager.create_secret(Name=f"app{i:02d}/key", SecretString=f"k{i}")
    entries = [{"id": f"app{i:02d}/key"} for i in range(25)]
    agent = agent_for(secrets_config(fault_proxy.url, entries, tmp_path))
    assert (await agent.refresher.cycle()).complete
    fault_proxy.reset_calls()
    await agent.refresher.cycle()
    # One ListSecrets per 10 filter values (the most a filter takes), nothing else.
    assert fault_proxy.count(LISTING) == 3 and fault_proxy.count() == 3
    await agent.source.close()


async def test_rotation_deletion_and_one_denied_secret(
    secretsmanager: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    for name in ("svc/a", "svc/b", "svc/c"):
        secretsmanager.create_secret(Name=name, SecretString=f"{name}-v1")
    agent = agent_for(secrets_config(fault_proxy.url, [{"prefix": "svc/"}], tmp_path))
    assert (await agent.refresher.cycle()).complete

    # svc/b is denied from now on (the whole batch naming it, and the call for it alone).
    for op in FETCHES:
        fault_proxy.add_fault(
            op, "error", code="AccessDeniedException", message="denied", match="secret:svc/b-"
        )
    for name in ("svc/a", "svc/b"):
        secretsmanager.put_secret_value(SecretId=name, SecretString=f"{name}-v2")
    secretsmanager.delete_secret(SecretId="svc/c", ForceDeleteWithoutRecovery=True)
    result = await agent.refresher.cycle()

    assert held(agent, "svc/a").string == "svc/a-v2"
    assert held(agent, "svc/b").string == "svc/b-v1"  # its last good value stays
    assert "svc/c" not in agent.state.snapshot.secrets  # deleted: gone
    assert [(e.subject, e.code) for e in result.errors] == [("svc/b", "AccessDeniedException")]
    kinds = {(c.name, c.kind) for c in result.change.secrets}
    assert kinds == {("svc/a", "updated"), ("svc/c", "removed")}

    fault_proxy.clear_faults()
    result = await agent.refresher.cycle()
    assert held(agent, "svc/b").string == "svc/b-v2" and not result.errors
    await agent.source.close()


async def test_a_secret_scheduled_for_deletion_disappears(
    secretsmanager: Any, moto_url: str, tmp_path: Path
) -> None:
    secretsmanager.create_secret(Name="one/x", SecretString="x")
    secretsmanager.create_secret(Name="one/y", SecretString="y")
    agent = agent_for(
        secrets_config(moto_url, [{"id": "one/x"}, {"id": "one/y", "required": False}], tmp_path)
    )
    assert (await agent.refresher.cycle()).complete
    secretsmanager.delete_secret(SecretId="one/y", RecoveryWindowInDays=7)
    result = await agent.refresher.cycle()
    assert set(agent.state.snapshot.secrets) == {"one/x"}
    assert [(e.subject, e.code) for e in result.errors] == [("one/y", "ResourceNotFoundException")]
    await agent.source.close()


async def test_missing_required_secret_is_not_complete(
    secretsmanager: Any, moto_url: str, tmp_path: Path
) -> None:
    secretsmanager.create_secret(Name="ok/x", SecretString="x")
    cfg = secrets_config(moto_url, [{"id": "ok/x"}, {"id": "ok/missing"}], tmp_path)
    agent = agent_for(cfg)
    result = await agent.refresher.cycle()
    assert not result.complete and not agent.state.ready
    assert [e.subject for e in result.errors if e.required] == ["ok/missing"]
    await agent.source.close()


async def test_secrets_manager_down_leaves_parameters_updating(
    ssm: Any, secretsmanager: Any, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/app/flag", Value="on", Type="String")
    secretsmanager.create_secret(Name="app/token", SecretString="t1")
    cfg = secrets_config(
        fault_proxy.url, [{"id": "app/token"}], tmp_path, parameters=[{"path": "/app"}]
    )
    agent = agent_for(cfg)
    assert (await agent.refresher.cycle()).complete
    fault_proxy.add_fault("ListSecrets", "status", status=503)
    ssm.put_parameter(Name="/app/flag", Value="off", Type="String", Overwrite=True)
    result = await agent.refresher.cycle()
    flag = agent.state.snapshot.get("/app/flag")
    assert result.ok and result.complete and flag is not None and flag.value == "off"
    assert held(agent, "app/token").string == "t1"
    assert [(e.subject, e.code) for e in result.errors] == [("app/token", "SourceUnavailable")]
    await agent.source.close()


async def test_role_arn_assumed_once_for_both_stores(
    ssm: Any, secretsmanager: Any, moto_url: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name="/x/a", Value="through-role", Type="String")
    secretsmanager.create_secret(Name="x/s", SecretString="secret-through-role")
    cfg = secrets_config(moto_url, [{"id": "x/s"}], tmp_path, parameters=[{"path": "/x"}])
    source_cfg = cfg.source.model_copy(
        update={"role_arn": "arn:aws:iam::123456789012:role/reader", "external_id": "ext-1"}
    )
    agent = agent_for(cfg.model_copy(update={"source": source_cfg}))
    assert (await agent.refresher.cycle()).complete
    assert held(agent, "x/s").string == "secret-through-role"
    composite: Any = agent.source
    session = composite.secrets._aws.aws.session
    assert session is composite.parameters._session  # one session, one AssumeRole
    creds = await session.get_credentials()
    assert creds.method == "sts-assume-role"
    await agent.source.close()
