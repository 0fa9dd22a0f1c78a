"""Acceptance 5: a JSON secret's fields in a template and in a dotenv bundle that parses back
exactly; failures keep the previous bytes and never show a value."""

from __future__ import annotations

import json
from pathlib import Path

from dotenv import dotenv_values

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.files.output import FilesOutput
from agent.outputs.files.templates import TemplateError, TemplateRenderer, template_context
from agent.snapshot import Secret, Snapshot
from tests.support.builders import parameter, secret, snapshot

FIELDS = {
    "username": "app_user",
    "password": 'p@ss "w0rd" $HOME\\n=x\nline2',
    "host": "db.internal",
    "port": 5432,
    "ssl": True,
}
PASSWORD = str(FIELDS["password"])


FLAG = parameter("/app/flag", "on")


def db_secret(fields: dict[str, object] = FIELDS, version: str = "v1") -> Secret:
    return secret("prod/db", json.dumps(fields), key="db", version_id=version)


TEMPLATE = (
    "[database]\n"
    "url = postgres://{{ secrets.db.username }}:{{ secrets.db.password }}"
    "@{{ secrets.db.host }}:{{ secrets.db.port }}/app\n"
    "ssl = {{ secrets.db.ssl }}\n"
    "flag = {{ params.flag }}\n"
)


def files(tmp_path: Path, **extra: object) -> FilesOutput:
    template = tmp_path / "app.conf.j2"
    template.write_text(TEMPLATE)
    cfg = FilesConfig.model_validate(
        {
            "dir": tmp_path / "run",
            "bundle": [
                {"path": "db.env", "format": "dotenv", "secret": "db"},
                {"path": "db-login.env", "secret": "db", "fields": ["username", "password"]},
                {"path": "db.json", "format": "json", "secret": "db", "fields": ["host", "port"]},
            ],
            "template": [{"source": template, "path": "app.conf"}],
            **extra,
        }
    )
    return FilesOutput(cfg, Metrics())


async def test_template_and_bundles_from_json_fields(tmp_path: Path) -> None:
    out = files(tmp_path)
    snap = snapshot(FLAG, db_secret())
    await out.publish(snap, Snapshot().diff(snap), True)
    run = tmp_path / "run"
    assert (run / "app.conf").read_text() == (
        "[database]\n"
        f"url = postgres://app_user:{PASSWORD}@db.internal:5432/app\n"
        "ssl = true\n"
        "flag = on\n"
    )
    assert dotenv_values(run / "db.env", interpolate=False) == {
        "USERNAME": "app_user",
        "PASSWORD": PASSWORD,
        "HOST": "db.internal",
        "PORT": "5432",
        "SSL": "true",
    }
    assert dotenv_values(run / "db-login.env", interpolate=False) == {
        "USERNAME": "app_user",
        "PASSWORD": PASSWORD,
    }
    assert json.loads((run / "db.json").read_text()) == {"HOST": "db.internal", "PORT": "5432"}
    assert (run / "db").read_text() == json.dumps(FIELDS)  # the whole secret, by its key
    assert not out.problems


async def test_a_rotation_rewrites_and_a_broken_secret_keeps_the_last_files(
    tmp_path: Path,
) -> None:
    out = files(tmp_path)
    first = snapshot(FLAG, db_secret())
    await out.publish(first, Snapshot().diff(first), True)
    rotated = snapshot(FLAG, db_secret({**FIELDS, "password": "rotated-pw"}, "v2"), generation=2)
    await out.publish(rotated, first.diff(rotated), False)
    run = tmp_path / "run"
    assert dotenv_values(run / "db.env", interpolate=False)["PASSWORD"] == "rotated-pw"
    assert "rotated-pw" in (run / "app.conf").read_text()

    broken = secret("prod/db", "not json", key="db", version_id="v3")
    third = snapshot(FLAG, broken, generation=3)
    await out.publish(third, rotated.diff(third), False)
    assert dotenv_values(run / "db.env", interpolate=False)["PASSWORD"] == "rotated-pw"
    assert (run / "db").read_text() == "not json"
    problems = "\n".join(out.problems)
    assert "not a JSON object" in problems and "rotated-pw" not in problems


def test_a_missing_field_is_named_without_values(tmp_path: Path) -> None:
    source = tmp_path / "t.j2"
    source.write_text("{{ secrets.db.passwrd }}")
    context = template_context(snapshot(FLAG, db_secret()))
    try:
        TemplateRenderer(source).render(context)
    except TemplateError as exc:
        assert "UndefinedError at line 1" in str(exc) and PASSWORD not in str(exc)
    else:
        raise AssertionError("rendered an undefined field")


def test_secrets_in_params_and_env_under_their_keys() -> None:
    context = template_context(snapshot(FLAG, db_secret()))
    assert context["params"]["db"] == json.dumps(FIELDS)
    assert context["env"]["DB"] == json.dumps(FIELDS)
    plain = secret("k", "plain-value", key="api_key", version_id="v")
    assert template_context(snapshot(FLAG, plain))["secrets"] == {"api_key": "plain-value"}
