"""The daemon's wiring of the Kubernetes actuator and leader election: loop → shield → actuator → HTTP → kmock."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import kmock
import pytest
import yaml
from hydra import compose, initialize_config_dir
from kubernetes import client
from omegaconf import OmegaConf

from disaggpilot.controller.app import build_actuator, build_elector, kubernetes_api_client
from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import ControllerConfig, register_configs
from disaggpilot.controller.errors import ConfigError
from disaggpilot.controller.logs import JsonFormatter
from disaggpilot.controller.telemetry import ControllerMetrics
from disaggpilot.controller.testing import FixedPolicy, FlakyActuator
from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.live.kubernetes import KubernetesActuator
from disaggpilot.env.testing import ScriptedBackend
from tests.controller.conftest import config, healthy_spec, make_rig
from tests.env.live.test_kubernetes import ServedEmulator, create_workloads

KUBE = {"namespace": "llm", "pools": {"prefill": {"kind": "Deployment", "name": "prefill", "container": "vllm"},
                                      "decode": {"kind": "StatefulSet", "name": "decode", "container": "vllm"}}}


class Gate:
    """A leadership that the test flips (the real elector is tested in test_leader.py)."""

    def __init__(self, leader: bool) -> None:
        self.leader = leader

    def is_leader(self) -> bool:
        return self.leader


@pytest.fixture
def decision_lines() -> Iterator[io.StringIO]:
    stream, handler = io.StringIO(), logging.StreamHandler()
    handler.stream = stream
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("disaggpilot.controller")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_standby_decides_in_shadow_mode_and_acts_once_it_leads(decision_lines: io.StringIO) -> None:
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}))
    gate = Gate(leader=False)
    rig.loop.leadership = gate
    standby = rig.run(2)
    assert isinstance(rig.actuator, FlakyActuator) and rig.actuator.calls == []
    assert [(d.mode, d.applied, d.action is not None) for d in standby] == [("shadow", False, True)] * 2
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_leader") == 0
    gate.leader = True
    leading = rig.run(1)
    assert [(d.mode, d.applied) for d in leading] == [("active", True)]
    assert rig.actuator.calls == [leading[0].action]
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_leader") == 1
    lines = [json.loads(line) for line in decision_lines.getvalue().splitlines()]
    assert [line["leader"] for line in lines if line["message"] == "decision"] == [False, False, True]


def test_the_loop_scales_workloads_through_the_kubernetes_actuator(api: client.ApiClient) -> None:
    create_workloads(api)
    settings = config(actuator="kubernetes", kubernetes=KUBE)
    actuator = build_actuator(settings, ScriptedBackend([healthy_spec()]), api)
    assert isinstance(actuator, KubernetesActuator)
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}), settings, actuator=actuator)
    (decision,) = rig.run(1)
    assert decision.applied and decision.actuator_error is None
    assert client.AppsV1Api(api).read_namespaced_deployment("prefill", "llm").spec.replicas == 3


def test_a_missing_workload_sends_the_loop_to_the_fallback_at_once(api: client.ApiClient) -> None:
    settings = config(actuator="kubernetes", kubernetes=KUBE)
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}), settings,
                   actuator=build_actuator(settings, ScriptedBackend([healthy_spec()]), api))
    first, second = rig.run(2)
    assert first.actuator_error is not None and "Deployment llm/prefill not found" in first.actuator_error
    assert (second.source, second.reason) == ("fallback", "actuator")


def test_the_elector_drives_the_leader_gauge(api: client.ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "controller-7d9f-abcde")
    metrics = ControllerMetrics(("prefill", "decode"), ("chat",), "active")
    assert build_elector(config(), api, VirtualClock(), metrics) is None  # leader election off
    settings = config(actuator="kubernetes", kubernetes=KUBE, leader_election={"enabled": True})
    elector = build_elector(settings, api, VirtualClock(), metrics)
    assert elector is not None and elector.identity == "controller-7d9f-abcde" and elector.namespace == "llm"
    assert metrics.registry.get_sample_value("disaggpilot_controller_leader") == 0
    assert elector.step()
    assert metrics.registry.get_sample_value("disaggpilot_controller_leader") == 1


def test_a_kubeconfig_file_is_honoured_and_a_bad_one_named(served: ServedEmulator, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "emulator", "cluster": {"server": served.url}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "emulator", "user": "nobody"}}]}))
    with kubernetes_api_client(ControllerConfig(kubeconfig=str(kubeconfig))) as api_client:
        create_workloads(api_client)
        assert client.AppsV1Api(api_client).read_namespaced_deployment("prefill", "llm").spec.replicas == 2
    with pytest.raises(ConfigError, match=r"controller\.kubeconfig='/nonexistent'"):
        kubernetes_api_client(ControllerConfig(kubeconfig="/nonexistent"))


def test_the_kubernetes_controller_config_composes_and_validates() -> None:
    register_configs()
    with initialize_config_dir(str(configs_dir()), version_base=None):
        cfg = compose("controller", overrides=["controller=kubernetes", "controller.fallback_only=true"])
    settings = ControllerConfig.from_dict(OmegaConf.to_container(cfg.controller, resolve=True))  # type: ignore[arg-type]
    assert (settings.mode, settings.actuator, settings.leader_election.enabled) == ("active", "kubernetes", True)
    assert settings.kubernetes is not None and settings.kubernetes.pools["prefill"].name == "vllm-prefill"
    assert settings.lease_namespace == settings.kubernetes.namespace == "llm-serving"


def test_a_knob_patch_refused_by_rbac_shows_in_the_controllers_metrics(served: ServedEmulator,
                                                                         api: client.ApiClient) -> None:
    create_workloads(api)
    whole = kmock.path("/apis/apps/v1/namespaces/llm/deployments/prefill")  # not its scale subresource
    served.emulator["get", whole] << 403 << {"kind": "Status", "apiVersion": "v1", "code": 403}
    settings = config(actuator="kubernetes", kubernetes=KUBE)
    metrics = ControllerMetrics(("prefill", "decode"), ("chat",), "active")
    actuator = build_actuator(settings, ScriptedBackend([healthy_spec()]), api, metrics=metrics)
    refused = "disaggpilot_controller_knob_patch_refused"
    assert metrics.registry.get_sample_value(refused, {"pool": "prefill"}) == 0
    actuator.apply(ClusterAction({"prefill": PoolTarget(replicas=4, max_num_batched_tokens=4096),
                                  "decode": PoolTarget(replicas=3, max_num_seqs=64)}))
    assert client.AppsV1Api(api).read_namespaced_deployment_scale("prefill", "llm").spec.replicas == 4
    assert metrics.registry.get_sample_value(refused, {"pool": "prefill"}) == 1
    assert metrics.registry.get_sample_value(refused, {"pool": "decode"}) == 0
