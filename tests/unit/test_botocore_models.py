"""The trimmed botocore data: current with the installed botocore, holding every operation the
agent calls, and the one an agent's session actually loads."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config import SourceConfig
from agent.sources.aws import AwsSession
from agent.sources.botocore_models import DATA_DIR, OPERATIONS, generate

AGENT = Path(__file__).resolve().parents[2] / "agent"


def test_committed_files_match_the_installed_botocore() -> None:
    expected = generate()
    committed = {
        str(p.relative_to(DATA_DIR)): p.read_text(encoding="utf-8")
        for p in DATA_DIR.rglob("*.json")
    }
    assert sorted(committed) == sorted(expected), "run scripts/trim-botocore-data"
    for relative, text in expected.items():
        assert committed[relative] == text, f"{relative}: run scripts/trim-botocore-data"


def test_every_operation_the_agent_calls_is_kept() -> None:
    called = set()
    for source in (AGENT / "sources").glob("*.py"):
        called |= set(re.findall(r"\bcall\(\s*\"([A-Z][A-Za-z]+)\"", source.read_text()))
    assert called, "no calls found: the pattern no longer matches the sources"
    kept = {op for ops in OPERATIONS.values() for op in ops}
    assert called <= kept, f"add to OPERATIONS and regenerate: {sorted(called - kept)}"


async def test_an_agent_session_builds_clients_from_the_trimmed_data() -> None:
    aws = AwsSession(
        SourceConfig(type="ssm", region="eu-west-1", endpoint_url="http://127.0.0.1:1")
    )
    session = await aws.prepare()
    assert str(DATA_DIR) in session.get_component("data_loader").search_paths
    async with session.create_client(
        "ssm",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ) as client:
        names = set(client.meta.service_model.operation_names)
    assert names == set(OPERATIONS["ssm"])
