"""deploy/: every manifest against Kubernetes' schemas, the kustomization, Prometheus' rules and config through
promtool, the Grafana dashboard's structure, and every PromQL expression against the metrics that exist.

Offline: ``kubectl apply --dry-run=client`` needs an API server for discovery even with ``--validate=false``,
so schemas come from ``kubernetes-validate`` (Kubernetes' OpenAPI as JSON schemas, strict: unknown fields
fail) and ``kubectl kustomize`` builds the kustomization. Debian's promtool is built without Kubernetes
service discovery, so ``check config`` runs on a copy whose ``kubernetes_sd_configs`` are static targets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir

import disaggpilot.env.metrics as contract
from disaggpilot.controller.config import ControllerConfig, register_configs
from disaggpilot.controller.telemetry import ControllerMetrics
from disaggpilot.env.catalog import configs_dir

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
KUBERNETES_VERSION = "1.37.0"
EXTERNAL_METRICS = {
    "up",  # Prometheus' own, one per scrape target
    "kube_pod_container_resource_requests",  # kube-state-metrics v2
}


OPT_IN = ("rbac-knobs.yaml",)
"""Manifests an operator applies on purpose, outside the kustomization."""


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object under deploy/ (the kustomization itself aside; the opt-in files included)."""
    for path in sorted(DEPLOY.glob("*/*.yaml")) + sorted(DEPLOY.glob("*.yaml")):
        if path.parent.name == "prometheus" or path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in manifests()}


def site_settings() -> tuple[dict[str, Any], ControllerConfig]:
    """The ConfigMap's site.yaml, composed as the pod does (``--config-dir`` + ``controller=site``)."""
    configmap = objects()[("ConfigMap", "disaggpilot-controller")]
    return configmap, _compose_site(configmap["data"]["site.yaml"])


def _compose_site(text: str) -> ControllerConfig:
    import tempfile

    register_configs()
    with tempfile.TemporaryDirectory() as site:
        (Path(site) / "controller").mkdir()
        (Path(site) / "controller" / "site.yaml").write_text(text)
        with initialize_config_dir(str(configs_dir()), version_base=None):
            cfg = compose("controller", overrides=["controller=site", f"hydra.searchpath=[file://{site}]"])
    return ControllerConfig.from_dict(cfg.controller)


# ----- Kubernetes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "document"), list(manifests()),
                         ids=[f"{p.relative_to(DEPLOY)}:{d['kind']}" for p, d in manifests()])
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path, document: dict[str, Any]) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert document["metadata"].get("namespace", "llm-serving") == "llm-serving"


def test_the_kustomization_builds_offline_with_every_object() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60,
                           check=True).stdout
    documents = [doc for doc in yaml.safe_load_all(built) if doc]
    assert sorted(doc["kind"] for doc in documents) == sorted(
        doc["kind"] for path, doc in manifests() if path.name not in OPT_IN)
    images = {container["image"] for doc in documents for container in containers(doc)}
    assert images == {"disaggpilot:0.1.0", "vllm/vllm-openai:v0.32.0"}  # the tags come from `images:`


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    pod = document.get("spec", {}).get("template", {}).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def test_every_image_is_named_once_in_the_kustomization_and_nowhere_with_a_tag() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    names = [entry["name"] for entry in kustomization["images"]]
    used = [container["image"] for _, doc in manifests() for container in containers(doc)]
    assert len(names) == len(set(names)) and set(names) == set(used)
    assert all(":" not in image and "@" not in image for image in used)  # pinned in one place: the kustomization
    assert "sha256:<digest>" in (DEPLOY / "README.md").read_text()  # how to pin by digest


def granted(role: str) -> set[tuple[str, str]]:
    rules = objects()[("Role", role)]["rules"]
    assert all(set(rule["verbs"]) <= {"get", "patch"} and rule["resourceNames"] for rule in rules)
    return {(resource, name) for rule in rules for resource in rule["resources"] for name in rule["resourceNames"]}


def test_the_role_allows_only_the_scale_subresource_of_the_named_workloads_and_the_lease() -> None:
    _, settings = site_settings()
    assert settings.kubernetes is not None
    workloads = {w.name for w in settings.kubernetes.pools.values()}
    assert granted("disaggpilot-controller") == {("deployments/scale", n) for n in workloads} | {
        ("leases", settings.leader_election.lease_name)}
    assert ("Lease", settings.leader_election.lease_name) in objects()
    # Patching whole Deployments (the knobs) is a separate Role, outside the kustomization, off in the settings.
    assert granted("disaggpilot-controller-knobs") == {("deployments", n) for n in workloads}
    binding = objects()[("RoleBinding", "disaggpilot-controller-knobs")]
    assert binding["subjects"][0]["name"] == "disaggpilot-controller"
    assert "rbac-knobs.yaml" not in yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert settings.kubernetes.patch_engine_args is False


def test_the_site_settings_compose_and_name_workloads_that_exist() -> None:
    _, settings = site_settings()
    assert (settings.mode, settings.actuator, settings.leader_election.enabled) == ("active", "kubernetes", True)
    assert settings.kubernetes is not None and settings.lease_namespace == "llm-serving"
    shipped = objects()
    for role, workload in settings.kubernetes.pools.items():
        deployment = shipped[(workload.kind, workload.name)]
        template = deployment["spec"]["template"]
        assert template["metadata"]["labels"]["disaggpilot.io/pool"] == role
        assert [c["name"] for c in template["spec"]["containers"]] == [workload.container]


def test_the_pinned_bundle_hash_is_the_shipped_bundles() -> None:
    _, settings = site_settings()
    assert settings.bundle is not None
    manifest = json.loads((ROOT / "policies" / Path(settings.bundle).name / "manifest.json").read_text())
    assert settings.expected_hash == manifest["bundle_sha256"], (
        "deploy/controller/configmap.yaml pins another bundle: set expected_hash to the bundle_sha256 of "
        "policies/<bundle>/manifest.json")


def test_the_controller_pod_runs_unprivileged_with_its_service_account() -> None:
    _, settings = site_settings()
    pod = objects()[("Deployment", "disaggpilot-controller")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "disaggpilot-controller" and pod["securityContext"]["runAsNonRoot"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}}
    assert "controller=site" in container["args"] and "--config-dir=/etc/disaggpilot" in container["args"]
    assert [e["name"] for e in container["env"]] == ["POD_NAME"]  # no secret reaches the controller
    assert container["ports"][0]["containerPort"] == settings.metrics_port
    assert (container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]) == (
        "/readyz", "/healthz")


def test_every_pod_and_container_is_locked_down() -> None:
    pods = [(path, doc["spec"]["template"]["spec"]) for path, doc in manifests() if doc["kind"] == "Deployment"]
    assert len(pods) == 3
    for path, pod in pods:
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, path
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, path
            assert context["readOnlyRootFilesystem"] is True, path
            written = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/tmp" in written, path  # a read-only root still has a scratch directory
        if path.parent.name == "vllm":
            assert pod["automountServiceAccountToken"] is False, path


def test_the_network_policy_lets_the_controller_reach_the_api_server_and_prometheus_only() -> None:
    policy = objects()[("NetworkPolicy", "disaggpilot-controller")]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "disaggpilot-controller"}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    _, settings = site_settings()
    assert ingress["ports"] == [{"protocol": "TCP", "port": settings.metrics_port}]
    assert ingress["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    egress_ports = sorted(port["port"] for rule in policy["egress"] for port in rule["ports"])
    assert egress_ports == [53, 53, 443, 6443, 9090]  # DNS, the API server, Prometheus


@pytest.mark.parametrize(("name", "knob"), [("vllm-prefill", "--max-num-batched-tokens"),
                                            ("vllm-decode", "--max-num-seqs")])
def test_the_vllm_pools_are_disaggregated_over_nixl_with_patchable_flags(name: str, knob: str) -> None:
    (container,) = objects()[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index(knob) + 1].isdigit()  # a separate item: the actuator replaces it in place
    transfer = json.loads(args[args.index("--kv-transfer-config") + 1])
    assert transfer == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert {p["name"] for p in container["ports"]} == {"http", "nixl"}


# ----- Prometheus ------------------------------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", "rules.yaml"], cwd=PROMETHEUS, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # promtool evaluates rule groups in random order, and a rule reading another group's record was once
    # right in only two runs of three; twelve runs make such a dependency fail here rather than in CI.
    for _ in range(12):
        tested = subprocess.run([tool, "test", "rules", "rules_test.yaml"], cwd=PROMETHEUS, capture_output=True,
                                text=True, timeout=60)
        assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_the_scrape_config_is_valid_with_static_targets_in_place_of_kubernetes_discovery(tmp_path: Path) -> None:
    tool = promtool()
    config = yaml.safe_load((PROMETHEUS / "prometheus.yaml").read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")[0]["namespaces"]["names"] == ["llm-serving"]
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "rules.yaml", tmp_path / "rules.yaml")
    checked = subprocess.run([tool, "check", "config", "prometheus.yaml"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {job["job_name"] for job in config["scrape_configs"]} == {"vllm", "disaggpilot-gateway",
                                                                    "disaggpilot-controller"}


# ----- PromQL names ----------------------------------------------------------------------------------------
def exported_metric_names() -> set[str]:
    """Every sample name something exports: vLLM and the gateway (the contract), the controller, rules."""
    names = {value for key, value in vars(contract).items() if key.isupper() and isinstance(value, str)
             and (value.startswith("vllm:") or value.startswith("disaggpilot_gateway_"))}
    names |= set(contract.LEGACY_NAMES)
    names |= {f"{name}{suffix}" for name in names for suffix in ("_bucket", "_sum", "_count")}
    exposition = ControllerMetrics(("prefill",), ("chat",), "active").exposition().decode()
    names |= {re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines() if not line.startswith("#")}
    return names | recorded_names() | EXTERNAL_METRICS


def recorded_names() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yaml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def promql_expressions() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yaml").read_text())["groups"]
    dashboard = json.loads((DEPLOY / "grafana" / "disaggpilot.json").read_text())
    return [rule["expr"] for group in groups for rule in group["rules"]] + [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def metric_names_in(expression: str) -> set[str]:
    """Identifiers of ``expression`` that are series names: not functions, keywords, labels or durations."""
    text = re.sub(r'"[^"]*"', "", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = {match.group() for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
             if not text[match.end():].lstrip().startswith("(")}  # a function or an aggregation
    return words - {"and", "or", "unless", "bool", "offset"}


def test_every_promql_expression_names_real_metrics() -> None:
    known, expressions = exported_metric_names(), promql_expressions()
    unknown = {(name, expr) for expr in expressions for name in metric_names_in(expr) if name not in known}
    assert unknown == set()
    assert metric_names_in("sum by (pool) (rate(vllm:prompt_tokens_total{job=\"vllm\"}[1m])) * 2") == {
        "vllm:prompt_tokens_total"}
    assert "disaggpilot_controller_leader" in known and "vllm:gpu_cache_usage_perc" in known


def test_the_dashboard_is_well_formed_grafana_json() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "disaggpilot.json").read_text())
    panels = dashboard["panels"]
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 30 and dashboard["title"].startswith("disaggpilot")
    assert len({p["id"] for p in panels}) == len(panels)
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
            assert panel["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"] for p in panels)
    for topic in ("SLO attainment", "Spend", "Fallback", "Leader"):
        assert topic in titles
