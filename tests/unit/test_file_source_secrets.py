"""The file source's [secrets] table: Secrets Manager secrets for development, no AWS."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import ParameterEntry, SecretEntry
from agent.snapshot import Snapshot
from agent.sources.file import FileSource

TEXT = """
"/app/a" = "x"

[secrets]
"dev/db" = { username = "app", password = "dev-only", port = 5432 }
"dev/token" = "plain-token"
"other/k" = "k"
"""


def source(tmp_path: Path, text: str, *entries: SecretEntry) -> FileSource:
    f = tmp_path / "values.toml"
    f.write_text(text)
    return FileSource(f, (ParameterEntry(path="/"),), entries)


async def test_secrets_table_is_not_a_parameter_hierarchy(tmp_path: Path) -> None:
    s = source(tmp_path, TEXT, SecretEntry(prefix="dev/"), SecretEntry(id="other/k", alias="k"))
    result = await s.load(Snapshot())
    assert set(result.parameters) == {"/app/a"} and not result.errors
    db = result.secrets["dev/db"]
    assert json.loads(db.string or "") == {"username": "app", "password": "dev-only", "port": 5432}
    assert db.fields() == {"username": "app", "password": "dev-only", "port": "5432"}
    assert db.version_stages == ("AWSCURRENT",) and db.arn.endswith(":secret:dev/db-local0")
    assert result.secrets["dev/token"].string == "plain-token"
    assert result.secrets["other/k"].key == "k"


async def test_an_edit_is_a_new_version_and_the_rest_stay(tmp_path: Path) -> None:
    s = source(tmp_path, TEXT, SecretEntry(prefix="dev/"))
    first = (await s.load(Snapshot())).secrets
    s.path.write_text(TEXT.replace("plain-token", "rotated-token"))
    second = (await s.load(Snapshot())).secrets
    assert second["dev/token"].version_id != first["dev/token"].version_id
    assert second["dev/db"].version_id == first["dev/db"].version_id


async def test_missing_secret_and_other_stages_are_errors(tmp_path: Path) -> None:
    s = source(
        tmp_path,
        TEXT,
        SecretEntry(id="dev/nope"),
        SecretEntry(id="dev/db", version_stage="AWSPREVIOUS", alias="prev"),
    )
    result = await s.load(Snapshot())
    assert [(e.subject, e.code, e.secret) for e in result.errors] == [
        ("dev/nope", "ResourceNotFoundException", True),
        ("dev/db", "ResourceNotFoundException", True),
    ]
    assert "AWSCURRENT" in result.errors[1].message and not result.secrets


async def test_version_survives_a_new_source_from_the_served_snapshot(tmp_path: Path) -> None:
    s = source(tmp_path, TEXT, SecretEntry(id="dev/token"))
    first = (await s.load(Snapshot())).secrets
    served = Snapshot.build({}, 1, first)
    again = FileSource(s.path, (), (SecretEntry(id="dev/token"),))  # a config reload
    assert (await again.load(served)).secrets["dev/token"].version_id == first[
        "dev/token"
    ].version_id
