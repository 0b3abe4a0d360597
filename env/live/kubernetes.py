"""The Kubernetes actuator: turns a shielded ``ClusterAction`` into patches of the pools' workloads.

Each pool role (``prefill``, ``decode``, ``aggregated``) maps to one workload:

- a ``Deployment`` or ``StatefulSet``: replicas through its ``scale`` subresource (the same endpoint
  ``kubectl scale`` and the HPA use), batch knobs in the ``args`` of one container of its pod template;
- a component of a Dynamo ``DynamoGraphDeployment`` (``nvidia.com/v1alpha1``): replicas in
  ``spec.services.<component>.replicas`` (a merge patch, as Dynamo's own planner does when no scaling adapter
  exists), batch knobs in ``spec.services.<component>.extraPodSpec.mainContainer.args``.

Replica targets are compared with the workload's current value and patched only when they differ. Batch knobs
are vLLM engine arguments (``--max-num-batched-tokens``, ``--max-num-seqs``): changing them rolls every pod of
the pool (each pays a cold start), so they are patched only when they differ from the running arguments and
at most once per ``knob_patch_period_s`` per pool. The time of the last patch is kept in the workload's
annotation :data:`PATCHED_AT_ANNOTATION`, so the period survives a controller restart or a leader change.

Every call has a timeout; failures map onto ``env.errors`` types (``kubernetes_errors``): 409/429/5xx and
timeouts are retryable, 401/403/404/400/422 are permanent and name the workload and the fix.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from disaggpilot.env.backend import POOL_ROLES, ClusterAction, PoolTarget
from disaggpilot.env.errors import FencedError, require
from disaggpilot.env.live.kubernetes_errors import (
    ForbiddenError,
    InvalidPatchError,
    WorkloadNotFoundError,
    from_exception,
)

if TYPE_CHECKING:  # the client takes most of a second to import: only the actuator itself loads it
    from kubernetes import client

log = logging.getLogger("disaggpilot.live.kubernetes")

DEPLOYMENT, STATEFULSET, DGD = "Deployment", "StatefulSet", "DynamoGraphDeployment"
KINDS: tuple[str, ...] = (DEPLOYMENT, STATEFULSET, DGD)
DGD_PLURAL = "dynamographdeployments"
KNOB_FLAGS: dict[str, str] = {"max_num_batched_tokens": "--max-num-batched-tokens", "max_num_seqs": "--max-num-seqs"}
"""PoolTarget field → vLLM engine flag."""
PATCHED_AT_ANNOTATION = "disaggpilot.io/engine-args-patched-at"
"""Workload annotation holding the Unix time (seconds) of the controller's last engine-argument patch."""
CONFIG_KEY = "controller.kubernetes"


@dataclass
class WorkloadConfig:
    """The workload behind one pool."""

    kind: str = DEPLOYMENT
    """``Deployment``, ``StatefulSet`` or ``DynamoGraphDeployment``."""
    name: str = ""
    """The workload's name (for a DynamoGraphDeployment: the DGD's name)."""
    component: str | None = None
    """DynamoGraphDeployment only: the service under ``spec.services`` (e.g. ``VllmPrefillWorker``)."""
    container: str | None = None
    """Deployment/StatefulSet only: the container running vLLM; null takes the pod template's first container."""

    def validate(self, key: str) -> None:
        """Check the fields; ``key`` names this workload in messages."""
        require(self.kind in KINDS, f"{key}.kind", self.kind, f"use one of {KINDS}")
        require(bool(self.name), f"{key}.name", self.name, "name the workload")
        require(self.kind != DGD or bool(self.component), f"{key}.component", self.component,
                "name the DynamoGraphDeployment service (spec.services key), e.g. VllmPrefillWorker")
        require(self.kind == DGD or self.component is None, f"{key}.component", self.component,
                "only a DynamoGraphDeployment has components: remove it")

    def describe(self, namespace: str) -> str:
        """``Deployment llm/prefill`` or ``DynamoGraphDeployment llm/graph component VllmPrefillWorker``."""
        suffix = f" component {self.component}" if self.component else ""
        return f"{self.kind} {namespace}/{self.name}{suffix}"


@dataclass
class KubernetesActuatorConfig:
    """Where the pools live and how the actuator may change them (``controller.kubernetes``)."""

    namespace: str = ""
    """Namespace of every workload (the controller's Role is granted there)."""
    pools: dict[str, WorkloadConfig] = field(default_factory=dict)
    """Workload per pool role (``prefill``, ``decode``, ``aggregated``)."""
    patch_engine_args: bool = True
    """Patch the batch knobs into the engine arguments (rolls the pool's pods); false changes replicas only."""
    knob_patch_period_s: float = 1800.0
    """Shortest time between two engine-argument patches of one pool (seconds); each one restarts its pods."""
    request_timeout_s: float = 1.0
    """Timeout of every API call (seconds); a timeout is retried by the controller. Scale calls answer in
    milliseconds; the controller refuses a timeout whose worst case does not fit its interval and the leader's
    renew deadline (``controller.config``)."""
    client_attempts: int = 1
    """Tries the HTTP client makes per API call, the first included (tries); urllib3's default of 4 hid up to
    ``4 x request_timeout_s`` per call. The controller's own backoff (``controller.fallback.backoff``) retries
    whole actions on top of it."""
    dgd_api_version: str = "nvidia.com/v1alpha1"
    """``group/version`` of DynamoGraphDeployment (v1alpha1 has ``spec.services``)."""
    field_manager: str = "disaggpilot-controller"
    """Field manager recorded on every patch (shows who changed what in ``managedFields``)."""

    def __post_init__(self) -> None:
        require(bool(self.namespace), f"{CONFIG_KEY}.namespace", self.namespace, "name the workloads' namespace")
        require(bool(self.pools), f"{CONFIG_KEY}.pools", self.pools, "map each pool role to its workload")
        for role, workload in self.pools.items():
            require(role in POOL_ROLES, f"{CONFIG_KEY}.pools", role, f"use pool roles from {POOL_ROLES}")
            workload.validate(f"{CONFIG_KEY}.pools.{role}")
        require(self.knob_patch_period_s >= 0, f"{CONFIG_KEY}.knob_patch_period_s", self.knob_patch_period_s,
                "use >= 0 seconds")
        require(self.client_attempts >= 1, f"{CONFIG_KEY}.client_attempts", self.client_attempts,
                "use >= 1 try (1: the client never retries; the controller's backoff does)")
        require(self.request_timeout_s > 0, f"{CONFIG_KEY}.request_timeout_s", self.request_timeout_s,
                "use > 0 seconds")
        require(self.dgd_api_version.count("/") == 1, f"{CONFIG_KEY}.dgd_api_version", self.dgd_api_version,
                "use group/version, e.g. nvidia.com/v1alpha1")


class KubernetesActuator:
    """Applies targets to the pools' workloads through the official ``kubernetes`` client.

    Args:
        config: namespace, workload per pool, knob patch period.
        api_client: a configured ``kubernetes.client.ApiClient`` (in-cluster service account, a kubeconfig,
            or a test server).
        clock: Unix time (seconds); it dates knob patches (the annotation) and enforces their period.
        fence: asked right before every API call whether this process may still write (the leader elector's
            ``is_leader``); when it says no, the call is not sent and :class:`~env.errors.FencedError` is raised.
        on_knobs_refused: told ``(pool, refused)`` after each knob patch attempt: whether RBAC refused it (the
            controller exports it as ``disaggpilot_knob_patch_refused{pool}``).
    """

    def __init__(self, config: KubernetesActuatorConfig, api_client: client.ApiClient,
                 clock: Callable[[], float] = time.time, fence: Callable[[], bool] | None = None,
                 on_knobs_refused: Callable[[str, bool], None] | None = None) -> None:
        from kubernetes import client

        self.config, self.clock, self.fence = config, clock, fence
        self.on_knobs_refused = on_knobs_refused or (lambda pool, refused: None)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.serializer = api_client
        self.dgd_group, self.dgd_version = config.dgd_api_version.split("/")
        self.knobs_forbidden_at: dict[str, float] = {}
        """Per pool, when (``clock``, seconds) a knob patch was last refused by RBAC; retried a period later."""

    def apply(self, action: ClusterAction) -> None:
        """Set every pool's replicas, then the batch knobs (when changed and the period allows).

        Replicas go first, for every pool: a knob patch that fails never keeps another pool from scaling.
        """
        for role, target in action.pools.items():
            if target.replicas is not None:
                self._scale(role, self._workload(role), target.replicas)
        for role, target in action.pools.items():
            knobs = {KNOB_FLAGS[name]: value for name, value in _knobs(target).items()}
            if knobs and self.config.patch_engine_args:
                self._set_knobs_unless_forbidden(role, self._workload(role), knobs)

    def _set_knobs_unless_forbidden(self, role: str, workload: WorkloadConfig, knobs: dict[str, int]) -> None:
        """Patch the knobs; without RBAC for it (the opt-in ``deploy/rbac-knobs.yaml``) log it and carry on
        scaling, trying again once per ``knob_patch_period_s`` in case the Role was granted since."""
        now = self.clock()
        if now - self.knobs_forbidden_at.get(role, -math.inf) < self.config.knob_patch_period_s:
            return
        try:
            self._set_engine_args(role, workload, knobs)
            self.knobs_forbidden_at.pop(role, None)
            self.on_knobs_refused(role, False)
        except ForbiddenError as error:
            self.knobs_forbidden_at[role] = now
            self.on_knobs_refused(role, True)
            log.warning("engine arguments of %s not patched, replicas still are: %s; apply deploy/rbac-knobs.yaml "
                        "to allow it, or set %s.patch_engine_args=false", workload.describe(self.config.namespace),
                        error, CONFIG_KEY, extra={"fields": {"event": "knobs_forbidden", "pool": role}})

    def _workload(self, role: str) -> WorkloadConfig:
        workload = self.config.pools.get(role)
        if workload is None:
            raise WorkloadNotFoundError(f"pool {role!r} has no workload: add {CONFIG_KEY}.pools.{role} "
                                        f"(configured: {sorted(self.config.pools)})")
        return workload

    # ----- replicas -------------------------------------------------------------------------------------
    def _scale(self, role: str, workload: WorkloadConfig, replicas: int) -> None:
        current = self._call(workload, role, lambda: self._read_replicas(workload))
        if current == replicas:
            return
        self._call(workload, role, lambda: self._patch_replicas(workload, replicas))
        log.info("scaled %s from %s to %d replicas", workload.describe(self.config.namespace), current, replicas,
                 extra={"fields": {"event": "scaled", "pool": role, "from": current, "to": replicas}})

    def _read_replicas(self, workload: WorkloadConfig) -> int | None:
        if workload.kind == DGD:
            service = dgd_service(self._read_dgd(workload), workload, self.config.namespace)
            return _as_int(service.get("replicas"))
        reader = (self.apps.read_namespaced_deployment_scale if workload.kind == DEPLOYMENT
                  else self.apps.read_namespaced_stateful_set_scale)
        scale = reader(workload.name, self.config.namespace, _request_timeout=self.config.request_timeout_s)
        return _as_int(scale.spec.replicas if scale.spec is not None else None)

    def _patch_replicas(self, workload: WorkloadConfig, replicas: int) -> None:
        if workload.kind == DGD:
            body = {"spec": {"services": {workload.component: {"replicas": replicas}}}}
            self._patch_dgd(workload, body)
            return
        patcher = (self.apps.patch_namespaced_deployment_scale if workload.kind == DEPLOYMENT
                   else self.apps.patch_namespaced_stateful_set_scale)
        patcher(workload.name, self.config.namespace, {"spec": {"replicas": replicas}},
                field_manager=self.config.field_manager, _request_timeout=self.config.request_timeout_s)

    # ----- engine arguments -----------------------------------------------------------------------------
    def _set_engine_args(self, role: str, workload: WorkloadConfig, knobs: dict[str, int]) -> None:
        obj = self._call(workload, role, lambda: self._read_object(workload))
        where = _ArgsLocation.find(obj, workload, self.config.namespace)
        what = workload.describe(self.config.namespace)
        if all(flag_value(where.args, flag) == str(value) for flag, value in knobs.items()):
            return
        last = _as_float(obj.get("metadata", {}).get("annotations", {}).get(PATCHED_AT_ANNOTATION))
        now = self.clock()
        if last is not None and now - last < self.config.knob_patch_period_s:
            log.info("engine arguments of %s deferred: last patched %.0f s ago, period %.0f s", what, now - last,
                     self.config.knob_patch_period_s,
                     extra={"fields": {"event": "knobs_deferred", "pool": role, "wanted": knobs}})
            return
        args = list(where.args)
        for flag, value in knobs.items():
            args = with_flag(args, flag, value, what)
        self._call(workload, role, lambda: self._patch_args(workload, obj, where, args, now))
        log.info("patched engine arguments of %s (its pods restart)", what,
                 extra={"fields": {"event": "knobs_patched", "pool": role, "knobs": knobs}})

    def _read_object(self, workload: WorkloadConfig) -> dict[str, Any]:
        if workload.kind == DGD:
            return self._read_dgd(workload)
        reader = (self.apps.read_namespaced_deployment if workload.kind == DEPLOYMENT
                  else self.apps.read_namespaced_stateful_set)
        obj = reader(workload.name, self.config.namespace, _request_timeout=self.config.request_timeout_s)
        serialized: Any = self.serializer.sanitize_for_serialization(obj)  # the API's camelCase JSON form
        return dict(serialized)

    def _patch_args(self, workload: WorkloadConfig, obj: dict[str, Any], where: _ArgsLocation, args: list[str],
                    now: float) -> None:
        stamp = f"{now:.3f}"
        if workload.kind == DGD:
            body = {"metadata": {"annotations": {PATCHED_AT_ANNOTATION: stamp}},
                    "spec": {"services": {workload.component: {"extraPodSpec": {"mainContainer": {"args": args}}}}}}
            self._patch_dgd(workload, body)
            return
        # A JSON patch by index, guarded by a test of the container's name: exact on any API server.
        ops: list[dict[str, Any]] = [{"op": "test", "path": f"{where.pointer}/name", "value": where.container},
                                     {"op": "add", "path": f"{where.pointer}/args", "value": args},
                                     _annotation_op(obj, stamp)]
        patcher = (self.apps.patch_namespaced_deployment if workload.kind == DEPLOYMENT
                   else self.apps.patch_namespaced_stateful_set)
        patcher(workload.name, self.config.namespace, ops, field_manager=self.config.field_manager,
                _request_timeout=self.config.request_timeout_s)

    # ----- DynamoGraphDeployment ------------------------------------------------------------------------
    def _read_dgd(self, workload: WorkloadConfig) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(self.dgd_group, self.dgd_version, self.config.namespace,
                                                            DGD_PLURAL, workload.name,
                                                            _request_timeout=self.config.request_timeout_s)
        return dict(obj)  # a custom object arrives as its JSON

    def _patch_dgd(self, workload: WorkloadConfig, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(self.dgd_group, self.dgd_version, self.config.namespace,
                                                   DGD_PLURAL, workload.name, body,
                                                   field_manager=self.config.field_manager,
                                                   _content_type="application/merge-patch+json",
                                                   _request_timeout=self.config.request_timeout_s)

    def _call(self, workload: WorkloadConfig, role: str, call: Callable[[], Any]) -> Any:
        """``call()`` (unless the fence forbids it) with its failure mapped onto a retryable or permanent error
        naming the workload."""
        if self.fence is not None and not self.fence():
            raise FencedError(f"{workload.describe(self.config.namespace)} not changed: this controller lost the "
                              "leader lease before the call, another replica may be acting")
        try:
            return call()
        except Exception as error:
            mapped = from_exception(error, workload.describe(self.config.namespace), f"{CONFIG_KEY}.pools.{role}")
            if mapped is error:
                raise
            raise mapped from error


@dataclass(frozen=True)
class _ArgsLocation:
    """Where a workload's vLLM arguments are: the list, and for a pod template the container and its pointer."""

    args: list[str]
    container: str | None = None
    pointer: str = ""

    @classmethod
    def find(cls, obj: dict[str, Any], workload: WorkloadConfig, namespace: str) -> _ArgsLocation:
        what = workload.describe(namespace)
        if workload.kind == DGD:
            main = dgd_service(obj, workload, namespace).get("extraPodSpec", {}).get("mainContainer", {})
            return cls(list(main.get("args") or []))
        containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        names = [c.get("name") for c in containers]
        index = 0 if workload.container is None and names else (
            names.index(workload.container) if workload.container in names else -1)
        if index < 0:
            raise WorkloadNotFoundError(f"{what} has no container {workload.container!r} (it has {names}): fix "
                                        f"{CONFIG_KEY}.pools.*.container")
        return cls(list(containers[index].get("args") or []), names[index],
                   f"/spec/template/spec/containers/{index}")


def bounded_retries(attempts: int) -> Any:
    """The HTTP client's retry policy: ``attempts`` tries per call, no backoff, no retries on answers (for
    ``kubernetes.client.Configuration.retries``; the controller's backoff retries whole actions)."""
    from urllib3.util.retry import Retry

    return Retry(total=attempts - 1, backoff_factor=0.0, status_forcelist=(), raise_on_status=False,
                 raise_on_redirect=False)


def dgd_service(obj: dict[str, Any], workload: WorkloadConfig, namespace: str) -> dict[str, Any]:
    """The ``spec.services`` entry of ``workload.component`` in a DynamoGraphDeployment ``obj``."""
    services = obj.get("spec", {}).get("services", {})
    if workload.component not in services:
        raise WorkloadNotFoundError(f"{workload.describe(namespace)} not found: the DGD has services "
                                    f"{sorted(services)}; fix {CONFIG_KEY}.pools.*.component")
    return dict(services[workload.component])


def _annotation_op(obj: dict[str, Any], stamp: str) -> dict[str, Any]:
    annotations = obj.get("metadata", {}).get("annotations")
    if annotations is None:
        return {"op": "add", "path": "/metadata/annotations", "value": {PATCHED_AT_ANNOTATION: stamp}}
    escaped = PATCHED_AT_ANNOTATION.replace("~", "~0").replace("/", "~1")  # RFC 6901 pointer escaping
    return {"op": "add", "path": f"/metadata/annotations/{escaped}", "value": stamp}


# ----- vLLM argument lists ---------------------------------------------------------------------------------
def _spellings(flag: str) -> tuple[str, str]:
    """vLLM's parser takes ``--max-num-seqs`` and ``--max_num_seqs`` alike."""
    return flag, "--" + flag[2:].replace("-", "_")


def _inline(flag: str) -> re.Pattern[str]:
    """The flag and its value inside a shell command string (``... --max-num-seqs 64 ...`` or ``=64``)."""
    names = "|".join(re.escape(s) for s in _spellings(flag))
    return re.compile(rf"(?<!\S)({names})(=|\s+)(\S+)")


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``args`` (separate items, ``--flag=value``, or inside a shell string)."""
    spellings = _spellings(flag)
    for index, item in enumerate(args):
        if item in spellings:
            return args[index + 1] if index + 1 < len(args) else None
        for spelling in spellings:
            if item.startswith(spelling + "="):
                return item[len(spelling) + 1:]
        match = _inline(flag).search(item) if any(c.isspace() for c in item) else None
        if match is not None:
            return match.group(3)
    return None


def with_flag(args: list[str], flag: str, value: int, what: str) -> list[str]:
    """``args`` with ``flag`` set to ``value``: replaced where it is, appended when absent.

    Raises:
        InvalidPatchError: the flag is absent and the arguments are a shell command string, where appending is
            unsafe (``... | tee log``).
    """
    spellings, out = _spellings(flag), list(args)
    for index, item in enumerate(out):
        if item in spellings and index + 1 < len(out):
            out[index + 1] = str(value)
            return out
        for spelling in spellings:
            if item.startswith(spelling + "="):
                out[index] = f"{spelling}={value}"
                return out
        if any(c.isspace() for c in item) and _inline(flag).search(item):
            out[index] = _inline(flag).sub(lambda m: f"{m.group(1)}{m.group(2)}{value}", item, count=1)
            return out
    if any(any(c.isspace() for c in item) for item in out):
        raise InvalidPatchError(f"{what}: its arguments are a shell command without {flag}; add {flag} to it "
                                "(or write the arguments as separate list items) so the controller can change it")
    return [*out, flag, str(value)]


def _knobs(target: PoolTarget) -> dict[str, int]:
    return {name: value for name in KNOB_FLAGS if (value := getattr(target, name)) is not None}


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):  # someone else's annotation value: treat as never patched
        return None
