"""The refresher with secrets: last good values, gone secrets, key clashes, metrics."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agent.config import RefreshConfig
from agent.metrics import Metrics
from agent.refresher import Refresher
from agent.results import ParameterError
from agent.snapshot import Change, Parameter, Secret, Snapshot
from agent.sources.base import LoadResult
from agent.state import AgentState

T = datetime(2026, 1, 1, tzinfo=UTC)


def s(name: str, version: str = "v1", key: str | None = None) -> Secret:
    return Secret(name, key or name, f"arn:{name}", version, ("AWSCURRENT",), T, f"val-{version}")


class Scripted:
    def __init__(self) -> None:
        self.result = LoadResult({})

    async def load(self, previous: Snapshot) -> LoadResult:
        return self.result

    async def fetch(self, name: str) -> Parameter | None:
        return None

    async def close(self) -> None:
        return None


def make() -> tuple[Refresher, Scripted, list[Change], Metrics]:
    published: list[Change] = []

    async def publish(snapshot: Snapshot, change: Change, first: bool) -> None:
        published.append(change)

    source, metrics = Scripted(), Metrics()
    r = Refresher(source, RefreshConfig(), AgentState(), metrics, publish, random.Random(1))
    return r, source, published, metrics


def load(
    *secrets: Secret, errors: tuple[ParameterError, ...] = (), params: tuple[Parameter, ...] = ()
) -> LoadResult:
    return LoadResult({p.name: p for p in params}, errors, secrets={x.ident: x for x in secrets})


async def test_denied_secret_keeps_its_value_gone_one_is_removed() -> None:
    r, source, published, metrics = make()
    source.result = load(s("a"), s("b"), s("c"))
    assert (await r.cycle()).complete
    denied = ParameterError("b", "AccessDeniedException", "no", name="b", secret=True)
    gone = ParameterError("c", "ResourceNotFoundException", "x", name="c", secret=True, keep=False)
    source.result = load(s("a", "v2"), errors=(denied, gone))
    result = await r.cycle()
    held = r.state.snapshot.secrets
    assert set(held) == {"a", "b"} and held["b"].version_id == "v1"
    assert [(c.kind, c.name) for c in result.change.secrets] == [("updated", "a"), ("removed", "c")]
    assert published[-1] is result.change
    assert metrics.registry.get_sample_value("ssm_sidecar_secrets") == 2
    assert (
        metrics.registry.get_sample_value("ssm_sidecar_secret_changes_total", {"kind": "removed"})
        == 1
    )
    assert (
        metrics.registry.get_sample_value("ssm_sidecar_refresh_errors_total", {"kind": "secret"})
        == 2
    )


async def test_required_secret_without_value_is_incomplete() -> None:
    r, source, _, _ = make()
    missing = ParameterError(
        "x", "ResourceNotFoundException", "no", name="x", secret=True, keep=False
    )
    source.result = load(s("a"), errors=(missing,))
    assert not (await r.cycle()).complete and not r.state.ready


async def test_a_secret_with_a_parameters_key_is_left_out_naming_both() -> None:
    r, source, _, _ = make()
    param = Parameter("/app/db", "db", "String", "p", 1, T)
    source.result = load(s("prod/db", key="db"), s("prod/x", key="x"), params=(param,))
    result = await r.cycle()
    assert set(r.state.snapshot.secrets) == {"prod/x"}
    clash = [e for e in result.errors if e.code == "KeyCollision"]
    assert len(clash) == 1 and "prod/db" in clash[0].message and "/app/db" in clash[0].message


async def test_version_age_gauge_counts_from_created_date() -> None:
    r, source, _, metrics = make()
    old = Secret(
        "a", "a", "arn:a", "v1", ("AWSCURRENT",), datetime.now(UTC) - timedelta(days=2), "x"
    )
    source.result = load(old)
    await r.cycle()
    age = metrics.registry.get_sample_value(
        "ssm_sidecar_secret_version_age_seconds", {"name": "a", "selector": ""}
    )
    assert age is not None and 2 * 86400 <= age < 2 * 86400 + 60
