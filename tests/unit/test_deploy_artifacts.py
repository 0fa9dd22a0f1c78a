"""Cheap structural checks of what we ship under deploy/ (the tools run in scripts/check-deploy).

These pin the properties operators rely on when they copy the files as they are: the sidecar
shape, the probes that can reach a loopback-only agent, the shared tmpfs, the security context,
and that every path the agent config names is a volume the right containers mount.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from agent.config import Config, parse_config
from agent.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
OBSERVABILITY = DEPLOY / "observability"
SIDECAR_UID = 65532


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(kind: str) -> dict[str, Any]:
    found = [
        d
        for path in sorted(BASE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for d in _docs(path)
        if d["kind"] == kind
    ]
    assert len(found) >= 1, kind
    return found[0]


def _configmap(name: str) -> dict[str, Any]:
    for path in sorted(BASE.glob("*.yaml")):
        for d in _docs(path):
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name:
                return d
    raise AssertionError(f"no ConfigMap {name}")


def _under(path: Path | str, mount: str) -> bool:
    return PurePosixPath(str(path)).is_relative_to(PurePosixPath(mount))


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    [agent] = [c for c in pod["initContainers"] if c["name"] == "ssm-sidecar"]
    container: dict[str, Any] = agent
    return container


@pytest.fixture(scope="module")
def app(pod: dict[str, Any]) -> dict[str, Any]:
    [only] = pod["containers"]
    container: dict[str, Any] = only
    return container


@pytest.fixture(scope="module")
def agent_config(sidecar: dict[str, Any]) -> Config:
    mount = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == "/etc/ssm-sidecar")
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    key = PurePosixPath(env["SSM_SIDECAR_CONFIG"]).relative_to(mount["mountPath"]).as_posix()
    volume_name = mount["name"]
    return parse_config(
        tomllib.loads(_configmap(volume_name)["data"][key]),
        file=f"{volume_name}/{key}",
        base=Path("/etc/ssm-sidecar"),
    )


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_sidecar_is_native_and_starts_the_app_only_when_ready(
    sidecar: dict[str, Any], agent_config: Config
) -> None:
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["run"]
    # httpGet goes to the pod IP: only the ops listener (no value, no token) is there.
    assert agent_config.http.ops_listen is not None
    ops_port = int(agent_config.http.ops_listen.rpartition(":")[2])
    assert agent_config.http.ops_listen.startswith("0.0.0.0:")
    [port] = [p for p in sidecar["ports"] if p["name"] == "ops"]
    assert port["containerPort"] == ops_port
    for probe, path in (("startupProbe", "/readyz"), ("livenessProbe", "/ping")):
        spec = sidecar[probe]
        assert spec["httpGet"] == {"path": path, "port": "ops"}
    startup = sidecar["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_values_are_shared_on_a_memory_emptydir(
    pod: dict[str, Any], sidecar: dict[str, Any], app: dict[str, Any], agent_config: Config
) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    agent_mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    app_mounts = {m["name"]: m for m in app["volumeMounts"]}
    assert agent_config.files is not None

    def volume_holding(path: Path) -> str:
        names = [n for n, m in agent_mounts.items() if _under(path, m["mountPath"])]
        assert len(names) == 1, path
        name: str = names[0]
        return name

    for path in (agent_config.files.dir, agent_config.http.token_file):
        name = volume_holding(path)
        assert volumes[name]["emptyDir"]["medium"] == "Memory"
        assert not agent_mounts[name].get("readOnly", False)
        assert app_mounts[name]["readOnly"] is True
        assert app_mounts[name]["mountPath"] == agent_mounts[name]["mountPath"]
    # The app writes its pid file where the agent reads it.
    assert agent_config.notify.pid_file is not None
    pid_volume = volume_holding(agent_config.notify.pid_file)
    assert "emptyDir" in volumes[pid_volume]
    assert not app_mounts[pid_volume].get("readOnly", False)
    script = _configmap("example-app-script")["data"]["app.sh"]
    assert f"> {agent_config.notify.pid_file}" in script
    assert "trap 'load' HUP" in script


def test_signalling_needs_no_capability(
    pod: dict[str, Any], sidecar: dict[str, Any], app: dict[str, Any], agent_config: Config
) -> None:
    assert pod["shareProcessNamespace"] is True
    assert agent_config.notify.signal == "SIGHUP"
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == SIDECAR_UID
    for container in (sidecar, app):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        # One uid for both (set on the pod): kill(2) then needs no CAP_KILL.
        assert "runAsUser" not in security


def test_service_account_carries_the_aws_identity(pod: dict[str, Any]) -> None:
    account = _one("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    assert pod["automountServiceAccountToken"] is False


def test_agent_config_is_the_one_documented_for_kubernetes(agent_config: Config) -> None:
    assert agent_config.source.type == "ssm"
    assert agent_config.http.listen.startswith("127.0.0.1:")
    assert agent_config.files is not None
    assert {b.format for b in agent_config.files.bundle} == {"dotenv"}


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_runtime_stage() -> None:
    instructions = _dockerfile()
    stages = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
    assert len(stages) == 2
    runtime = instructions[stages[1] :]
    values = {ins: rest for ins, rest in runtime}
    assert values["USER"] == f"{SIDECAR_UID}:{SIDECAR_UID}"
    assert json.loads(values["ENTRYPOINT"]) == ["ssm-sidecar"]
    assert json.loads(values["CMD"]) == ["run"]
    assert "--from=builder /opt/ssm-sidecar /opt/ssm-sidecar" in values["COPY"]
    healthcheck = values["HEALTHCHECK"]
    assert "'127.0.0.1',2773" in healthcheck and "'/readyz'" in healthcheck
    assert "org.opencontainers.image.title" in values["LABEL"]
    # Nothing but the venv comes from the builder; no compiler is installed anywhere.
    assert not any("apt-get" in rest or "gcc" in rest for _, rest in instructions)


def test_dockerignore_keeps_the_build_context_to_the_package() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"
    kept = {line[1:] for line in lines if line.startswith("!")}
    assert kept == {"pyproject.toml", "constraints.txt", "README.md", "agent/"}


def test_systemd_unit_shape() -> None:
    text = (DEPLOY / "systemd" / "ssm-sidecar@.service").read_text()
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["Type"] == ["notify"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["SystemCallFilter"] == ["@system-service"]
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert settings[key] == ["yes"], key
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["RuntimeDirectory"] == ["ssm-sidecar/%i"]
    exec_start = shlex.split(settings["ExecStart"][0])
    assert exec_start[1:] == ["run", "-c", "/etc/ssm-sidecar/%i.toml"]
    # The example config writes only where the unit lets it (its RuntimeDirectory).
    cfg = parse_config(
        tomllib.loads((DEPLOY / "systemd" / "example-app.toml").read_text()),
        file="example-app.toml",
        base=Path("/etc/ssm-sidecar"),
    )
    assert cfg.files is not None
    for path in (cfg.files.dir, cfg.http.token_file):
        assert _under(path, "/run/ssm-sidecar/example-app")


def _policies() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((DEPLOY / "iam").glob("*.json"))}


def test_iam_policies_are_least_privilege() -> None:
    policies = _policies()
    assert policies
    for name, policy in policies.items():
        assert policy["Version"] == "2012-10-17", name
        if name == "fleet-kms-key-policy.json":
            continue  # a key policy (Resource "*" is the key itself): checked below
        for statement in policy["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert all("*" not in a for a in actions), name
            # No write, no listing of the account's parameters.
            assert not {"ssm:PutParameter", "ssm:DescribeParameters"} & set(actions), name
            resources = statement.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            # ListSecrets and BatchGetSecretValue take no resource ARN in IAM (the values
            # BatchGetSecretValue returns still need GetSecretValue on each secret).
            unscoped = {"secretsmanager:ListSecrets", "secretsmanager:BatchGetSecretValue"}
            assert "*" not in resources or set(actions) <= unscoped, name
            if "kms:Decrypt" in actions and name.startswith("fleet-"):
                # Fleet mode: direct decryption, bound to the parameters by encryption context.
                arns = statement["Condition"]["StringLike"]["kms:EncryptionContext:PARAMETER_ARN"]
                assert arns and all(":parameter/" in a for a in arns)
            elif "kms:Decrypt" in actions:
                via = statement["Condition"]["StringEquals"]["kms:ViaService"]
                assert re.fullmatch(r"(ssm|secretsmanager)\.[a-z0-9-]+\.amazonaws\.com", via)
    read = policies["agent-read-policy.json"]["Statement"]
    actions = {a for s in read for a in s["Action"] if isinstance(s["Action"], list)}
    assert actions == {"ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"}
    trust = policies["cross-account-trust-policy.json"]["Statement"][0]
    assert trust["Condition"]["StringEquals"]["sts:ExternalId"]


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((OBSERVABILITY / "ssm-sidecar.rules.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bssm_sidecar_[a-z_]+", expr))


def _exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    # Families that have not been observed yet still export these suffixes.
    for family in Metrics().registry.collect():
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_rules_and_dashboard_use_only_metrics_the_agent_exports() -> None:
    exported = _exported_names()
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    exprs = [r["expr"] for r in _rules()] + [
        t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])
    ]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used, "no ssm_sidecar_ metric used"
    assert used <= exported, used - exported


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert len(alerts) >= 7
    tests = yaml.safe_load((OBSERVABILITY / "ssm-sidecar.rules.test.yaml").read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for alert in alerts:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"
    for rule in _rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"page", "ticket"}
            assert rule["annotations"]["runbook"].startswith("docs/troubleshooting.md#")


def test_alert_runbooks_point_at_real_sections() -> None:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("## ")
    }
    for rule in _rules():
        if "alert" in rule:
            anchor = rule["annotations"]["runbook"].partition("#")[2]
            assert anchor in anchors, anchor


def test_dashboard_panels_are_unique_and_laid_out() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
    assert {v["name"] for v in dashboard["templating"]["list"]} == {
        "datasource",
        "job",
        "instance",
    }


def test_fleet_key_policy_lets_the_agent_role_only_decrypt_its_parameters() -> None:
    key_policy = _policies()["fleet-kms-key-policy.json"]["Statement"]
    agent = [s for s in key_policy if s["Action"] == "kms:Decrypt"]
    assert len(agent) == 1
    arns = agent[0]["Condition"]["StringLike"]["kms:EncryptionContext:PARAMETER_ARN"]
    assert all(a.startswith("arn:aws:ssm:") and ":parameter/" in a for a in arns)
    assert agent[0]["Principal"]["AWS"].endswith(":role/example-app-prod-ssm-reader")
