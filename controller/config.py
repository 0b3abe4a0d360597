"""Settings of the controller daemon: grouped dataclasses, one docstring (with its unit) under every field.

They double as Hydra structured-config schemas (``configs/controller/default.yaml`` names
``/schema/controller@_here_`` in its defaults list, so OmegaConf type-checks every override), and each validates
itself at construction, naming the key, the bad value and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from disaggpilot.agent.baselines.headroom_planner import HeadroomPlannerSettings
from disaggpilot.env.catalog import SHIPPED_BUNDLE
from disaggpilot.env.config_store import SCHEMA_GROUP
from disaggpilot.env.config_store import register_configs as register_env_configs
from disaggpilot.env.errors import require
from disaggpilot.env.live.kubernetes import KubernetesActuatorConfig
from disaggpilot.env.live.launcher_config import LauncherConfig
from disaggpilot.env.structured import build

DEFAULT_DEMAND_WINDOW = HeadroomPlannerSettings().demand_window_intervals

MODES = ("shadow", "active")
DEFAULT_METRICS_PORT = 9400
"""The daemon's metrics port by default: the one ``deploy/controller/`` exposes and Prometheus scrapes."""
LOG_FORMATS = ("auto", "human", "json", "text")
ACTUATORS = ("backend", "dry_run", "kubernetes", "local")
CONFIG_SCHEMA = f"/{SCHEMA_GROUP}/controller@_here_"
"""The defaults-list entry of ``configs/controller/*.yaml``: the :class:`ControllerConfig` schema, in the group
of schemas (``env.config_store.SCHEMA_GROUP``) so that ``controller=`` never offers it."""


@dataclass
class PoolBounds:
    """Hard replica bounds of one pool, enforced by the shield whatever the policy asks."""

    min_replicas: int = 1
    """Fewest replicas the controller may leave in the pool (replicas)."""
    max_replicas: int = 12
    """Most replicas the controller may ask for (replicas)."""

    def validate(self, key: str) -> None:
        """Check the range; ``key`` names the pool in messages."""
        require(self.min_replicas >= 0, f"{key}.min_replicas", self.min_replicas, "use a count >= 0")
        require(self.max_replicas >= self.min_replicas, f"{key}.max_replicas", self.max_replicas,
                f"use at least min_replicas={self.min_replicas}")


def _default_pools() -> dict[str, PoolBounds]:
    """The default scenario's pools (``configs/scenario/steady.yaml``: 1..12 replicas each)."""
    return {"prefill": PoolBounds(), "decode": PoolBounds()}


@dataclass
class ShieldConfig:
    """The safety rules every action passes before it reaches the cluster (``controller.shield``)."""

    pools: dict[str, PoolBounds] = field(default_factory=_default_pools)
    """Bounds per pool role; every pool the cluster has must be listed (replicas)."""
    gpu_budget: int = 64
    """GPUs the controller may have billed at once over every pool, draining replicas included (GPUs). The
    default is the default scenario's budget (``steady``: 64), the one ``deploy/controller/configmap.yaml``
    deploys; a larger cluster raises it with its pools' bounds."""
    max_step: int = 2
    """Largest replica change per pool per interval (replicas)."""
    up_cooldown_s: float = 60.0
    """Time after a pool's last scale-up before it may scale up again (seconds)."""
    down_cooldown_s: float = 300.0
    """Time after a pool's last change, up or down, before it may scale down (seconds)."""
    down_hysteresis_intervals: int = 3
    """A scale-down happens only once it has been asked for this many consecutive intervals (intervals)."""
    hold_down_while_starting: bool = True
    """Forbid a pool's scale-down while any of its replicas is still starting."""
    tenant_floors: bool = True
    """Forbid every scale-down while a tenant's attainment is below its target minus the margin."""
    tenant_floor_margin: float = 0.02
    """How far below its attainment target a tenant may be before scale-downs stop (fraction, 0..1)."""

    def __post_init__(self) -> None:
        self.pools = dict(self.pools)
        key = "controller.shield"
        require(len(self.pools) >= 1, f"{key}.pools", self.pools, "give bounds for every pool of the cluster")
        for role, bounds in self.pools.items():
            bounds.validate(f"{key}.pools.{role}")
        require(self.gpu_budget >= 1, f"{key}.gpu_budget", self.gpu_budget, "use >= 1 GPU")
        require(self.max_step >= 1, f"{key}.max_step", self.max_step, "use >= 1 replica per interval")
        for name in ("up_cooldown_s", "down_cooldown_s"):
            require(getattr(self, name) >= 0, f"{key}.{name}", getattr(self, name), "use >= 0 seconds")
        require(self.down_hysteresis_intervals >= 1, f"{key}.down_hysteresis_intervals",
                self.down_hysteresis_intervals, "use >= 1 (1 scales down as soon as asked)")
        require(0 <= self.tenant_floor_margin < 1, f"{key}.tenant_floor_margin", self.tenant_floor_margin,
                "use a fraction in [0, 1)")


@dataclass
class BackoffConfig:
    """Retry schedule for temporary errors of the metrics source and the actuator, within one decision."""

    initial_s: float = 1.0
    """Wait before the first retry (seconds); a temporary error's own ``delay_s`` is respected if longer."""
    max_s: float = 8.0
    """Longest wait between two tries (seconds)."""
    multiplier: float = 2.0
    """Growth of the wait from one retry to the next (factor >= 1)."""
    attempts: int = 3
    """Tries per decision, the first included (tries)."""

    def __post_init__(self) -> None:
        key = "controller.fallback.backoff"
        require(self.initial_s >= 0, f"{key}.initial_s", self.initial_s, "use >= 0 seconds")
        require(self.max_s >= self.initial_s, f"{key}.max_s", self.max_s, f"use >= initial_s={self.initial_s}")
        require(self.multiplier >= 1, f"{key}.multiplier", self.multiplier, "use a factor >= 1")
        require(self.attempts >= 1, f"{key}.attempts", self.attempts, "use >= 1 try")

    def delays(self) -> list[float]:
        """The waits before each retry (seconds): ``attempts - 1`` values."""
        return [min(self.max_s, self.initial_s * self.multiplier ** i) for i in range(self.attempts - 1)]


@dataclass
class FallbackConfig:
    """When the controller stops trusting its policy, what it uses instead, and when it trusts it again."""

    staleness_limit_s: float = 90.0
    """A snapshot whose interval ended longer ago than this is stale (seconds)."""
    max_actuator_failures: int = 3
    """Consecutive decisions whose action could not be applied before the fallback takes over (decisions)."""
    recovery_intervals: int = 3
    """Consecutive healthy intervals under the fallback before the policy is trusted again (intervals)."""
    planner: str = "headroom_planner"
    """The fallback planner: a baseline of ``agent.baselines``. By default the fixed-headroom planner, the one
    baseline that holds every tenant's target on the simulator's scenarios (Dynamo's ``sla_planner`` plans
    for the mean and misses them all; see ``docs/experiments/2026-12-06-yardsticks.md``)."""
    planner_settings: dict[str, Any] = field(default_factory=dict)
    """Its settings (``configs/policy/<planner>.yaml``); an SLA planner's ``adjustment_interval_s`` defaults to
    the controller's interval."""
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    """Retry schedule for temporary errors."""

    def __post_init__(self) -> None:
        self.planner_settings = dict(self.planner_settings)
        key = "controller.fallback"
        require(self.staleness_limit_s > 0, f"{key}.staleness_limit_s", self.staleness_limit_s, "use > 0 seconds")
        require(self.max_actuator_failures >= 1, f"{key}.max_actuator_failures", self.max_actuator_failures,
                "use >= 1 decision")
        require(self.recovery_intervals >= 0, f"{key}.recovery_intervals", self.recovery_intervals,
                "use >= 0 intervals (0 returns to the policy at the first healthy interval)")
        require(bool(self.planner), f"{key}.planner", self.planner, "name a baseline, e.g. sla_planner")


@dataclass
class LeaderElectionConfig:
    """Leader election through a Kubernetes Lease (``controller.leader_election``; client-go's defaults)."""

    enabled: bool = False
    """Elect a leader among the controller's replicas; only the leader acts (the others run as shadows)."""
    lease_name: str = "disaggpilot-controller"
    """Name of the ``coordination.k8s.io/v1`` Lease (the controller's Role may get/patch only this one)."""
    namespace: str | None = None
    """The Lease's namespace; null uses ``controller.kubernetes.namespace``."""
    identity: str | None = None
    """This replica's holder identity; null uses ``$POD_NAME``, else the host name (the pod name in a pod)."""
    lease_duration_s: float = 15.0
    """How long a standby waits after the holder's last renewal it saw before taking over (seconds)."""
    renew_deadline_s: float = 10.0
    """The leader stops acting when it has not renewed for this long (seconds); < lease_duration_s."""
    retry_period_s: float = 2.0
    """Time between two attempts to acquire or renew (seconds); < renew_deadline_s."""
    request_timeout_s: float = 5.0
    """Timeout of each Lease API call (seconds); < renew_deadline_s, so one hung call cannot use up the deadline."""

    def __post_init__(self) -> None:
        key = "controller.leader_election"
        require(bool(self.lease_name), f"{key}.lease_name", self.lease_name, "name the Lease")
        require(self.retry_period_s > 0, f"{key}.retry_period_s", self.retry_period_s, "use > 0 seconds")
        require(self.renew_deadline_s > self.retry_period_s, f"{key}.renew_deadline_s", self.renew_deadline_s,
                f"use more than retry_period_s={self.retry_period_s} so a renewal can be retried")
        require(self.lease_duration_s > self.renew_deadline_s, f"{key}.lease_duration_s", self.lease_duration_s,
                f"use more than renew_deadline_s={self.renew_deadline_s}: the leader must stop acting before "
                "a standby may take over")
        require(0 < self.request_timeout_s < self.renew_deadline_s, f"{key}.request_timeout_s",
                self.request_timeout_s, f"use a timeout in (0, renew_deadline_s={self.renew_deadline_s})")


@dataclass
class ControllerConfig:
    """The daemon: what it runs, how often, how carefully, and what it exports."""

    mode: str = "shadow"
    """``shadow`` decides and reports but never acts; ``active`` applies the shielded actions."""
    interval_s: float = 30.0
    """Control interval: time between decisions (seconds); must equal the bundle's training interval."""
    bundle: str | None = None
    """Policy bundle directory, from a trusted location only (its model is a pickle); the daemon refuses to start
    when it does not exist. Null runs the fallback planner alone, which active mode allows only with
    ``fallback_only``."""
    fallback_only: bool = False
    """Run the fallback planner alone, without a bundle, and say so: required to act (``mode=active``) with no
    bundle, so that a forgotten ``controller.bundle`` never silently leaves the cluster to the fallback."""
    expected_hash: str | None = None
    """Refuse the bundle unless its SHA-256 content hash equals this (64 hex digits); null skips the pin, which
    active mode refuses unless ``allow_unpinned``. Get it from a trusted copy:
    ``python -m disaggpilot.agent.bundle <dir>``."""
    allow_unpinned: bool = False
    """Let active mode run a bundle without ``expected_hash``. Dangerous: a bundle's model is a pickle, and its
    manifest proves nothing against whoever can write the bundle (they recompute it), so an unpinned bundle
    runs whatever code was slipped into it, with the controller's credentials. For experiments only."""
    scenario: str = "steady"
    """Scenario (name in ``configs/scenario/`` or YAML path) describing the tenants (SLOs, targets) and pools."""
    actuator: str = "backend"
    """In active mode: ``backend`` applies actions to the backend, ``dry_run`` only logs them, ``kubernetes``
    patches the workloads of ``kubernetes``, ``local`` runs the replicas as local processes (``launcher``)."""
    kubernetes: KubernetesActuatorConfig | None = None
    """The pools' workloads (namespace, kind/name per pool, knob patch period); required by ``kubernetes``."""
    launcher: LauncherConfig | None = None
    """Local replica processes (kind, discovery file the rig's gateway reads, emulator settings); required by
    ``local``, which starts the scenario's initial replicas and stops them all on exit."""
    kubeconfig: str | None = None
    """Kubeconfig file for the Kubernetes API; null uses the pod's service account (in-cluster)."""
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    """Leader election among replicas of the controller."""
    shield: ShieldConfig = field(default_factory=ShieldConfig)
    """Safety rules."""
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    """Fallback, recovery and retry settings."""
    metrics_port: int = DEFAULT_METRICS_PORT
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (the port ``deploy/controller/`` scrapes); 0 serves
    nothing."""
    metrics_host: str = "127.0.0.1"
    """Address the HTTP server binds (loopback by default; ``0.0.0.0`` inside a pod for Prometheus)."""
    log_format: str = "auto"
    """``auto``: ``human`` on a terminal, ``json`` otherwise (and always in the run's log file); ``human``: one
    short line per decision (time, replicas before→after, decider, fallback reason, attainment) on the console;
    ``json``: one JSON object per log line, one line per decision, for log shipping; ``text``: Hydra's format."""
    history_intervals: int = 240
    """Snapshots kept for the policies (intervals); must cover the fallback planner's adjustment interval."""
    slo_period_start: str | None = None
    """When an SLO period began, as an ISO 8601 time with its UTC offset (``2026-12-07T00:00:00+00:00``); periods
    repeat every scenario duration, and the observation's time left and miss budgets follow that calendar. A
    bundle that learned a burst's time of the period (``specialists/flash_crowd_scheduled``) needs it; null: the
    first period begins at the first snapshot. Misses before the controller started are not known to it: a
    controller joining a period mid-way counts its budget from its own start."""

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_period_start()
        self._check_bundle()
        self._check_kubernetes()
        require(self.actuator != "local" or self.launcher is not None, "controller.launcher", self.launcher,
                "describe the local replicas (kind, discovery_path) to use actuator=local, e.g. controller=local")
        require(self.interval_s > 0, "controller.interval_s", self.interval_s, "use a positive interval in seconds")
        require(self.expected_hash is None or re.fullmatch(r"[0-9a-f]{64}", self.expected_hash) is not None,
                "controller.expected_hash", self.expected_hash, "use the bundle's 64-hex-digit bundle_sha256")
        require(self.mode != "active" or self.bundle is None or self.expected_hash is not None or self.allow_unpinned,
                "controller.expected_hash", self.expected_hash, f"active mode runs only a pinned bundle: set it to "
                f"the content hash of a trusted copy of {self.bundle} (print it with "
                "`python -m disaggpilot.agent.bundle <dir>`), or set controller.allow_unpinned=true to run unverified "
                "code (experiments only)")
        require(0 <= self.metrics_port <= 65535, "controller.metrics_port", self.metrics_port,
                "use a TCP port, or 0 to serve no metrics")
        require(self.history_intervals >= 2, "controller.history_intervals", self.history_intervals,
                "keep at least 2 intervals")
        adjustment = self.fallback.planner_settings.get("adjustment_interval_s", self.interval_s)
        require(float(adjustment) / self.interval_s <= self.history_intervals, "controller.history_intervals",
                self.history_intervals, f"keep the fallback's adjustment interval ({adjustment} s) of snapshots")
        window = self.fallback.planner_settings.get("demand_window_intervals", DEFAULT_DEMAND_WINDOW)
        require(self.fallback.planner != "headroom_planner" or int(window) <= self.history_intervals,
                "controller.history_intervals", self.history_intervals,
                f"keep the fallback's demand window ({window} intervals) of snapshots")
        waits = sum(self.fallback.backoff.delays())
        require(waits < self.interval_s, "controller.fallback.backoff", waits,
                f"retries wait {waits} s in all: keep it under interval_s={self.interval_s}")

    def _check_period_start(self) -> None:
        start = _iso_time(self.slo_period_start)
        require(start is not None or self.slo_period_start is None, "controller.slo_period_start",
                self.slo_period_start, "use an ISO 8601 time with its UTC offset, e.g. 2026-12-07T00:00:00+00:00, "
                "or null")
        require(start is None or start.tzinfo is not None, "controller.slo_period_start", self.slo_period_start,
                "add the UTC offset (e.g. +00:00): a time without one means a different instant on every host")

    @property
    def slo_period_start_unix_s(self) -> float | None:
        """:attr:`slo_period_start` as Unix time (seconds), or None."""
        start = _iso_time(self.slo_period_start)
        return None if start is None else start.timestamp()

    def _check_bundle(self) -> None:
        require(not (self.fallback_only and self.bundle is not None), "controller.fallback_only", self.fallback_only,
                "drop it to run the bundle, or drop controller.bundle to run the fallback planner alone")
        require(self.bundle is not None or self.fallback_only or self.mode != "active", "controller.bundle",
                self.bundle, f"active mode needs a policy bundle (e.g. controller.bundle={SHIPPED_BUNDLE});"
                " set controller.fallback_only=true to act with the fallback planner alone")

    def _check_kubernetes(self) -> None:
        require(self.actuator != "kubernetes" or self.kubernetes is not None, "controller.kubernetes",
                self.kubernetes, "describe the workloads (namespace, pools) to use actuator=kubernetes")
        require(not self.leader_election.enabled or self.lease_namespace is not None,
                "controller.leader_election.namespace", self.leader_election.namespace,
                "name the Lease's namespace, or set controller.kubernetes.namespace")
        worst = self.worst_case_write_s()
        if worst is None:
            return
        limits = {"controller.interval_s": self.interval_s}
        if self.leader_election.enabled:
            limits["controller.leader_election.renew_deadline_s"] = self.leader_election.renew_deadline_s
        for key, limit in limits.items():
            require(worst < limit, "controller.kubernetes.request_timeout_s",
                    None if self.kubernetes is None else self.kubernetes.request_timeout_s,
                    f"one decision's writes may take {worst:g} s (controller.fallback.backoff.attempts x "
                    "controller.kubernetes.client_attempts x API calls (2 per pool, 4 with patch_engine_args) x "
                    f"request_timeout_s + the backoff's waits), not under {key}={limit:g}: lower the timeout, "
                    "the attempts or the backoff")

    def worst_case_write_s(self) -> float | None:
        """Longest one decision's Kubernetes writes can take when every call times out (seconds): attempts x
        calls x timeout + the backoff's waits; None without the Kubernetes actuator."""
        if self.actuator != "kubernetes" or self.kubernetes is None:
            return None
        cluster, backoff = self.kubernetes, self.fallback.backoff
        calls = len(cluster.pools) * (4 if cluster.patch_engine_args else 2)  # read + patch, replicas and knobs
        return backoff.attempts * cluster.client_attempts * calls * cluster.request_timeout_s + sum(backoff.delays())

    @property
    def lease_namespace(self) -> str | None:
        """Namespace of the leader Lease: its own setting, else the workloads' namespace."""
        if self.leader_election.namespace:
            return self.leader_election.namespace
        return self.kubernetes.namespace if self.kubernetes is not None else None

    def _check_choices(self) -> None:
        for key, choices in (("mode", MODES), ("log_format", LOG_FORMATS), ("actuator", ACTUATORS)):
            require(getattr(self, key) in choices, f"controller.{key}", getattr(self, key), f"use one of {choices}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | DictConfig) -> ControllerConfig:
        """Build from a mapping or a composed ``controller`` node: OmegaConf types it against this schema and
        builds the nested settings (``OmegaConf.to_object``), each validating itself."""
        return build(cls, raw)


def register_configs() -> None:
    """Store the :class:`ControllerConfig` schema, and the environment's the controller composes beside it, in
    Hydra's ``ConfigStore`` (idempotent)."""
    register_env_configs()
    ConfigStore.instance().store(group=SCHEMA_GROUP, name="controller", node=ControllerConfig)


def _iso_time(text: str | None) -> datetime | None:
    """``text`` as a time; None when it is null or not ISO 8601."""
    try:
        return None if text is None else datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
