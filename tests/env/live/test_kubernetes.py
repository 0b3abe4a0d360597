"""The Kubernetes actuator against an API emulator served over HTTP on 127.0.0.1.

No Kubernetes API server can run here, so the tests use kmock (PyPI): an in-memory Kubernetes API emulator
served by aiohttp on a free loopback port. The official ``kubernetes`` client talks real HTTP to it: it
creates Deployments, StatefulSets, DynamoGraphDeployments and Leases, reads and patches them (JSON patches
and merge patches, the ``scale`` subresource). kmock has no controllers (no pods, no rollouts) and no
optimistic concurrency; :class:`VersionedEmulator` adds the API server's ``resourceVersion`` rule (bumped on
every write; a write carrying a stale one answers 409 Conflict), which leader election relies on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
from kubernetes import client

from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.errors import PermanentError, TemporaryError
from disaggpilot.env.live.kubernetes import (
    PATCHED_AT_ANNOTATION,
    KubernetesActuator,
    KubernetesActuatorConfig,
    flag_value,
    with_flag,
)
from disaggpilot.env.live.kubernetes_errors import (
    ForbiddenError,
    InvalidPatchError,
    KubernetesTemporaryError,
    WorkloadNotFoundError,
    from_api_status,
)
from disaggpilot.env.structured import build

NAMESPACE = "llm"
DEPLOYMENTS = kmock.resource("apps/v1/deployments")


class VersionedEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with the API server's optimistic concurrency on ``metadata.resourceVersion``."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.version = 0
        self.serial = asyncio.Lock()  # one request at a time: the check and the write are one step

    async def _handle(self, request: Any) -> Any:
        async with self.serial:
            writes = request.resource is not None and isinstance(request.data, dict) and request.action in (
                kmock.action.CREATE, kmock.action.UPDATE)
            if writes:
                self._check_and_bump(request)
            return await super()._handle(request)

    def _check_and_bump(self, request: Any) -> None:
        metadata = request.data.setdefault("metadata", {})
        if request.action == kmock.action.UPDATE:
            key = (request.resource, request.namespace, request.name)
            stored = self.objects[key] if key in self.objects and not self.objects[key].deleted else None
            expected = metadata.get("resourceVersion")
            if stored is not None and expected is not None and \
                    stored.get("metadata", {}).get("resourceVersion") != expected:
                raise kmock.KubernetesError(status=409, reason="Conflict",
                                            message="the object has been modified; apply your changes to the "
                                                    "latest version and try again")
        self.version += 1
        metadata["resourceVersion"] = str(self.version)


class ServedEmulator:
    """A kmock emulator served on a free loopback port from a background thread (the client is synchronous)."""

    def __init__(self, versioned: bool = True) -> None:
        self.kind = VersionedEmulator if versioned else kmock.KubernetesEmulator
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.kind() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            self.emulator, self.url = emulator, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServedEmulator:
        self._thread.start()
        if not self._ready.wait(timeout=15):
            raise RuntimeError("kmock did not start within 15 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)

    def api_client(self) -> client.ApiClient:
        """An official client pointed at the emulator (no credentials, no retries)."""
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.retries = False
        return client.ApiClient(configuration)


@pytest.fixture
def served() -> Iterator[ServedEmulator]:
    """An emulator on a free port, stopped after the test."""
    with ServedEmulator() as server:
        yield server


@pytest.fixture
def api(served: ServedEmulator) -> Iterator[client.ApiClient]:
    """The official client, pointed at the emulator."""
    with served.api_client() as api_client:
        yield api_client


def pod_template(args: list[str]) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "vllm"}},
            "spec": {"containers": [{"name": "sidecar", "image": "proxy"},
                                    {"name": "vllm", "image": "vllm/vllm-openai", "args": args}]}}


def create_workloads(api: client.ApiClient) -> None:
    """A prefill Deployment and a decode StatefulSet, two replicas each, with vLLM arguments."""
    apps = client.AppsV1Api(api)
    selector = {"matchLabels": {"app": "vllm"}}
    apps.create_namespaced_deployment(NAMESPACE, {
        "metadata": {"name": "prefill"},
        "spec": {"replicas": 2, "selector": selector,
                 "template": pod_template(["--model", "m", "--max-num-batched-tokens", "8192"])}})
    apps.create_namespaced_stateful_set(NAMESPACE, {
        "metadata": {"name": "decode"},
        "spec": {"replicas": 2, "serviceName": "decode", "selector": selector,
                 "template": pod_template(["--model", "m", "--max-num-seqs=128"])}})


def actuator(api: client.ApiClient, clock: list[float] | None = None, **overrides: Any) -> KubernetesActuator:
    raw: dict[str, Any] = {
        "namespace": NAMESPACE, "knob_patch_period_s": 600.0,
        "pools": {"prefill": {"kind": "Deployment", "name": "prefill", "container": "vllm"},
                  "decode": {"kind": "StatefulSet", "name": "decode", "container": "vllm"}}}
    now = clock if clock is not None else [1_000_000.0]
    refusals = overrides.pop("on_knobs_refused", None)
    raw.update(overrides)
    return KubernetesActuator(build(KubernetesActuatorConfig, raw), api, clock=lambda: now[0],
                              on_knobs_refused=refusals)


def container_args(api: client.ApiClient, kind: str, name: str) -> list[str]:
    apps = client.AppsV1Api(api)
    obj = apps.read_namespaced_deployment(name, NAMESPACE) if kind == "Deployment" else \
        apps.read_namespaced_stateful_set(name, NAMESPACE)
    return list(obj.spec.template.spec.containers[1].args)


def patches(served: ServedEmulator) -> list[str]:
    """Paths of every PATCH the emulator received, in order."""
    return [request.url.path.split(NAMESPACE, 1)[1] for request in served.emulator
            if request.method == kmock.method.PATCH]


# ----- replicas ----------------------------------------------------------------------------------------
def test_replicas_of_a_deployment_and_a_statefulset_go_through_the_scale_subresource(
        served: ServedEmulator, api: client.ApiClient) -> None:
    create_workloads(api)
    actuator(api).apply(ClusterAction.replicas(prefill=4, decode=3))
    apps = client.AppsV1Api(api)
    assert apps.read_namespaced_deployment("prefill", NAMESPACE).spec.replicas == 4
    assert apps.read_namespaced_stateful_set("decode", NAMESPACE).spec.replicas == 3
    assert patches(served) == ["/deployments/prefill/scale", "/statefulsets/decode/scale"]


def test_an_unchanged_replica_target_sends_no_patch(served: ServedEmulator, api: client.ApiClient) -> None:
    create_workloads(api)
    actuator(api).apply(ClusterAction.replicas(prefill=2, decode=2))
    assert patches(served) == []


def test_dgd_component_replicas_are_a_merge_patch_of_the_custom_object(served: ServedEmulator,
                                                                       api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    services = {"Frontend": {"replicas": 1},
                "VllmPrefillWorker": {"replicas": 1, "extraPodSpec": {"mainContainer": {
                    "args": ["python3 -m dynamo.vllm --model m --max-num-batched-tokens 4096 2>&1 | tee log"]}}},
                "VllmDecodeWorker": {"replicas": 2}}
    custom.create_namespaced_custom_object("nvidia.com", "v1alpha1", NAMESPACE, "dynamographdeployments", {
        "apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment", "metadata": {"name": "graph"},
        "spec": {"services": services}})
    pools = {"prefill": {"kind": "DynamoGraphDeployment", "name": "graph", "component": "VllmPrefillWorker"},
             "decode": {"kind": "DynamoGraphDeployment", "name": "graph", "component": "VllmDecodeWorker"}}
    actuator(api, pools=pools).apply(ClusterAction({"prefill": PoolTarget(replicas=3, max_num_batched_tokens=2048),
                                                    "decode": PoolTarget(replicas=5)}))
    graph = custom.get_namespaced_custom_object("nvidia.com", "v1alpha1", NAMESPACE, "dynamographdeployments",
                                                "graph")
    got = graph["spec"]["services"]
    assert (got["VllmPrefillWorker"]["replicas"], got["VllmDecodeWorker"]["replicas"], got["Frontend"]["replicas"]) \
        == (3, 5, 1)
    assert got["VllmPrefillWorker"]["extraPodSpec"]["mainContainer"]["args"] == [
        "python3 -m dynamo.vllm --model m --max-num-batched-tokens 2048 2>&1 | tee log"]
    assert PATCHED_AT_ANNOTATION in graph["metadata"]["annotations"]


def test_a_missing_dgd_component_is_permanent_and_names_it(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("nvidia.com", "v1alpha1", NAMESPACE, "dynamographdeployments", {
        "metadata": {"name": "graph"}, "spec": {"services": {"Frontend": {"replicas": 1}}}})
    pools = {"prefill": {"kind": "DynamoGraphDeployment", "name": "graph", "component": "VllmPrefillWorker"}}
    with pytest.raises(WorkloadNotFoundError, match=r"component VllmPrefillWorker.*Frontend"):
        actuator(api, pools=pools).apply(ClusterAction.replicas(prefill=2))


# ----- batch knobs -------------------------------------------------------------------------------------
def knobs(tokens: int, seqs: int) -> ClusterAction:
    return ClusterAction({"prefill": PoolTarget(max_num_batched_tokens=tokens),
                          "decode": PoolTarget(max_num_seqs=seqs)})


def test_knobs_are_patched_into_the_named_container_only_when_changed(served: ServedEmulator,
                                                                      api: client.ApiClient) -> None:
    create_workloads(api)
    acting = actuator(api)
    acting.apply(knobs(8192, 128))  # what the pods already run: nothing to roll
    assert patches(served) == []
    acting.apply(knobs(4096, 64))
    assert container_args(api, "Deployment", "prefill") == ["--model", "m", "--max-num-batched-tokens", "4096"]
    assert container_args(api, "StatefulSet", "decode") == ["--model", "m", "--max-num-seqs=64"]
    sidecar = client.AppsV1Api(api).read_namespaced_deployment("prefill", NAMESPACE).spec.template.spec.containers[0]
    assert (sidecar.name, sidecar.image, sidecar.args) == ("sidecar", "proxy", None)
    assert patches(served) == ["/deployments/prefill", "/statefulsets/decode"]


def test_knobs_are_patched_at_most_once_per_period_even_across_restarts(served: ServedEmulator,
                                                                        api: client.ApiClient) -> None:
    create_workloads(api)
    clock = [1_000_000.0]
    actuator(api, clock).apply(knobs(4096, 128))
    clock[0] += 599.0
    actuator(api, clock).apply(knobs(2048, 128))  # a new actuator (a restarted controller): the annotation holds
    assert container_args(api, "Deployment", "prefill")[-1] == "4096"
    clock[0] += 1.0
    actuator(api, clock).apply(knobs(2048, 128))
    assert container_args(api, "Deployment", "prefill")[-1] == "2048"
    annotations = client.AppsV1Api(api).read_namespaced_deployment("prefill", NAMESPACE).metadata.annotations
    assert float(annotations[PATCHED_AT_ANNOTATION]) == pytest.approx(1_000_600.0)
    assert patches(served) == ["/deployments/prefill", "/deployments/prefill"]


def test_knob_patching_can_be_switched_off(served: ServedEmulator, api: client.ApiClient) -> None:
    create_workloads(api)
    actuator(api, patch_engine_args=False).apply(knobs(1024, 8))
    assert patches(served) == []


def test_without_the_knobs_role_replicas_still_scale_and_the_refusal_is_logged(
        served: ServedEmulator, api: client.ApiClient, caplog: pytest.LogCaptureFixture) -> None:
    create_workloads(api)
    forbidden = {"kind": "Status", "apiVersion": "v1", "code": 403}
    whole = kmock.path(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/prefill")  # not its scale subresource
    served.emulator["get", whole] << 403 << forbidden  # the default Role: get/patch the scale only
    clock, refusals = [1_000_000.0], []
    acting = actuator(api, clock, on_knobs_refused=lambda pool, refused: refusals.append((pool, refused)))
    both = ClusterAction({"prefill": PoolTarget(replicas=4, max_num_batched_tokens=4096),
                          "decode": PoolTarget(replicas=3, max_num_seqs=64)})
    with caplog.at_level(logging.WARNING, logger="disaggpilot.live.kubernetes"):
        acting.apply(both)
    apps = client.AppsV1Api(api)
    assert apps.read_namespaced_deployment_scale("prefill", NAMESPACE).spec.replicas == 4
    assert apps.read_namespaced_stateful_set("decode", NAMESPACE).spec.replicas == 3
    assert container_args(api, "StatefulSet", "decode")[-1] == "--max-num-seqs=64"  # its knobs are allowed
    assert [r.fields["event"] for r in caplog.records] == ["knobs_forbidden"]  # type: ignore[attr-defined]
    assert "deploy/rbac-knobs.yaml" in caplog.records[0].getMessage()
    assert refusals == [("prefill", True), ("decode", False)]  # what the controller exports per pool
    clock[0] += 599.0
    acting.apply(ClusterAction({"prefill": PoolTarget(replicas=5, max_num_batched_tokens=2048)}))
    assert apps.read_namespaced_deployment_scale("prefill", NAMESPACE).spec.replicas == 5
    assert len(caplog.records) == 1  # not asked again within the knob period


def test_engine_flags_are_read_and_written_in_every_spelling() -> None:
    assert flag_value(["--max-num-seqs", "8"], "--max-num-seqs") == "8"
    assert flag_value(["--max_num_seqs=16"], "--max-num-seqs") == "16"
    assert flag_value(["vllm serve m --max-num-seqs 32 --port 8000"], "--max-num-seqs") == "32"
    assert flag_value(["--max-num-seqs-extra", "1"], "--max-num-seqs") is None
    assert with_flag(["--model", "m"], "--max-num-seqs", 4, "w") == ["--model", "m", "--max-num-seqs", "4"]
    assert with_flag(["--max_num_seqs=16"], "--max-num-seqs", 4, "w") == ["--max_num_seqs=4"]
    shell = with_flag(["serve --max-num-seqs 32 | tee x"], "--max-num-seqs", 4, "w")
    assert shell == ["serve --max-num-seqs 4 | tee x"]
    with pytest.raises(InvalidPatchError, match="shell command without --max-num-seqs"):
        with_flag(["serve m 2>&1 | tee log"], "--max-num-seqs", 4, "Deployment llm/decode")


# ----- errors ------------------------------------------------------------------------------------------
def test_a_missing_workload_is_permanent_and_names_it_and_the_key(api: client.ApiClient) -> None:
    with pytest.raises(WorkloadNotFoundError, match=r"Deployment llm/prefill not found.*controller\.kubernetes\.pools"
                                                    r"\.prefill") as caught:
        actuator(api).apply(ClusterAction.replicas(prefill=3))
    assert isinstance(caught.value, PermanentError)


def test_a_missing_container_names_the_containers_there(api: client.ApiClient) -> None:
    create_workloads(api)
    pools = {"prefill": {"kind": "Deployment", "name": "prefill", "container": "engine"}}
    with pytest.raises(WorkloadNotFoundError, match=r"no container 'engine' \(it has \['sidecar', 'vllm'\]\)"):
        actuator(api, pools=pools).apply(knobs(1024, 8))


def test_a_pool_without_a_workload_is_a_config_error_naming_the_key(api: client.ApiClient) -> None:
    with pytest.raises(WorkloadNotFoundError, match=r"add controller\.kubernetes\.pools\.aggregated"):
        actuator(api).apply(ClusterAction.replicas(aggregated=1))


@pytest.mark.parametrize(("status", "headers", "kind", "delay_s"), [
    (429, {"Retry-After": "7"}, KubernetesTemporaryError, 7.0),
    (503, {}, KubernetesTemporaryError, 1.0),
    (409, {}, KubernetesTemporaryError, 1.0),
    (403, {}, ForbiddenError, None),
    (422, {}, InvalidPatchError, None),
])
def test_api_answers_map_to_retryable_or_permanent_errors(served: ServedEmulator, api: client.ApiClient, status: int,
                                                          headers: dict[str, str], kind: type[Exception],
                                                          delay_s: float | None) -> None:
    create_workloads(api)
    served.emulator["patch", DEPLOYMENTS, kmock.name("prefill")] << status << kmock.headers(headers) << {
        "kind": "Status", "apiVersion": "v1", "code": status}
    with pytest.raises(kind, match="Deployment llm/prefill") as caught:
        actuator(api).apply(ClusterAction.replicas(prefill=5))
    assert isinstance(caught.value, TemporaryError) == (delay_s is not None)
    if delay_s is not None:
        assert caught.value.delay_s == delay_s  # type: ignore[attr-defined]


def test_an_unreachable_api_server_is_retryable(api: client.ApiClient) -> None:
    with ServedEmulator() as gone:
        url = gone.url
    configuration = client.Configuration()
    configuration.host, configuration.retries = url, False
    with client.ApiClient(configuration) as dead, pytest.raises(KubernetesTemporaryError, match="no answer"):
        actuator(dead).apply(ClusterAction.replicas(prefill=5))


def test_forbidden_says_how_to_grant_access() -> None:
    error = from_api_status(403, "Forbidden", None, "Deployment llm/prefill", "controller.kubernetes.pools.prefill")
    assert "deploy/controller/role.yaml" in str(error)


@pytest.mark.parametrize(("raw", "match"), [
    ({"namespace": ""}, "controller.kubernetes.namespace=''"),
    ({"pools": {"prefill": {"kind": "ReplicaSet", "name": "p"}}}, "pools.prefill.kind='ReplicaSet'"),
    ({"pools": {"prefill": {"kind": "DynamoGraphDeployment", "name": "g"}}}, "pools.prefill.component=None"),
    ({"pools": {"gpu": {"name": "p"}}}, "controller.kubernetes.pools='gpu'"),
    ({"knob_patch_period_s": -1.0}, "knob_patch_period_s=-1.0"),
])
def test_bad_settings_are_refused_with_the_key(raw: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"namespace": NAMESPACE, "pools": {"prefill": {"name": "prefill"}}, **raw}
    with pytest.raises(PermanentError, match=match.replace("(", r"\(").replace(".", r"\.")):
        build(KubernetesActuatorConfig, settings)
