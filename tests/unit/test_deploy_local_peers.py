"""The shipped Kubernetes example turns the AWS SDK protocol on for its app, and the app's uid is
one the agent answers: copied as is, the app's AWS_ENDPOINT_URL_SSM reads work and no other uid
of the pod gets in."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from agent.config import parse_config

BASE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(BASE.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_the_example_app_using_the_sdk_endpoint_is_an_allowed_uid() -> None:
    docs = _documents()
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [configmap] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ssm-sidecar-config"
    ]

    cfg = parse_config(tomllib.loads(configmap["data"]["config.toml"]))
    pod = deployment["spec"]["template"]["spec"]
    [app] = pod["containers"]
    uses_sdk = any(e["name"] == "AWS_ENDPOINT_URL_SSM" for e in app.get("env", []))
    assert uses_sdk
    assert cfg.http.aws_protocols == ("ssm",)
    uid = app.get("securityContext", {}).get("runAsUser", pod["securityContext"]["runAsUser"])
    assert cfg.http.allowed_uids == (uid,)
