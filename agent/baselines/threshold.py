"""``threshold``: a Kubernetes HPA/KEDA-style autoscaler per pool (as AIBrix and KEDA deploy it for vLLM).

Per pool, HPA's rule on one metric: ``ratio = metric / target``; outside a ±``tolerance`` band,
``desired = ceil(current × ratio)``. The metric is the prefill pool's waiting requests per replica and the
decode (and aggregated) pool's KV-cache usage. Replicas still starting count as replicas with a zero metric
(HPA's treatment of not-ready pods), so ``desired = ceil(metric summed over ready replicas / target)``.

Scale-up is immediate, at most ``max_scale_up_factor`` × current per step. Scale-down waits
``scale_down_cooldown_s`` since the pool's last scale (the episode start counts as one: the deployment has
just been sized) and then goes to the largest recommendation of that window (HPA's downscale
stabilisation), so one quiet interval does not shed capacity. Counts stay within the pool's bounds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings, enabled_roles, make_action
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.agent.sizing.pools import bounded
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import KV_USAGE, WAITING, MetricsSnapshot, PoolMetrics


@dataclass
class ThresholdSettings:
    """Settings of :class:`ThresholdPolicy` (``configs/agent/threshold.yaml``)."""

    prefill_waiting_per_replica: float = 2.0
    """Target of the prefill pool: waiting requests per replica (requests)."""
    decode_kv_usage: float = 0.7
    """Target of the decode pool: mean KV-cache usage (fraction 0..1)."""
    aggregated_kv_usage: float = 0.7
    """Target of the aggregated pool, when the cluster has one: mean KV-cache usage (fraction 0..1)."""
    tolerance: float = 0.1
    """No change while the metric is within ±tolerance of its target (fraction; HPA's default 0.1)."""
    max_scale_up_factor: float = 2.0
    """Scale-up limit per step: at most this many times the current replicas (factor > 1)."""
    scale_down_cooldown_s: float = 300.0
    """Time since a pool's last scale before it may shrink, and HPA's stabilisation window (seconds)."""

    def __post_init__(self) -> None:
        key = "agent.threshold"
        require(self.prefill_waiting_per_replica > 0, f"{key}.prefill_waiting_per_replica",
                self.prefill_waiting_per_replica, "use a positive number of requests per replica")
        for name in ("decode_kv_usage", "aggregated_kv_usage"):
            value = getattr(self, name)
            require(0 < value <= 1, f"{key}.{name}", value, "use a KV-usage fraction in (0, 1]")
        require(0 <= self.tolerance < 1, f"{key}.tolerance", self.tolerance, "use a fraction in [0, 1)")
        require(self.max_scale_up_factor > 1, f"{key}.max_scale_up_factor", self.max_scale_up_factor, "use > 1")
        require(self.scale_down_cooldown_s >= 0, f"{key}.scale_down_cooldown_s", self.scale_down_cooldown_s,
                "use >= 0 seconds")

    def target(self, role: str) -> float:
        """The metric target of ``role``'s pool."""
        return {"prefill": self.prefill_waiting_per_replica, "decode": self.decode_kv_usage,
                "aggregated": self.aggregated_kv_usage}[role]


def metric_total(role: str, pool: PoolMetrics) -> float:
    """The pool's metric summed over ready replicas: waiting requests (prefill) or KV usage (others)."""
    if role == "prefill":
        return pool.gauges.get(WAITING, 0.0)
    return pool.gauges.get(KV_USAGE, 0.0) * pool.replicas_ready


def hpa_desired(current: int, total: float, target: float, tolerance: float) -> int:
    """HPA's recommendation: ``ceil(current × ratio)`` with ``ratio = total / (current × target)``.

    Args:
        current: replicas asked for (ready plus starting).
        total: the metric summed over ready replicas.
        target: the metric's target per replica.
        tolerance: the no-change band around ratio 1 (fraction).
    """
    if current <= 0:
        return 1 if total > 0 else 0
    ratio = total / (current * target)
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(current * ratio - 1e-9)


class ThresholdPolicy:
    """HPA-style scaling of every pool on its own metric.

    Args:
        **params: fields of :class:`ThresholdSettings`.
    """

    name = "threshold"

    def __init__(self, **params: Any) -> None:
        self.settings = build_settings(ThresholdSettings, params, self.name)
        self.cluster: ClusterConfig | None = None

    def reset(self, context: PolicyContext) -> None:
        """Forget recommendations; the episode start counts as every pool's last scale."""
        self.cluster = context.scenario.cluster
        self.last_scale_s = dict.fromkeys(enabled_roles(self.cluster), 0.0)
        self.recommendations: dict[str, deque[tuple[float, int]]] = {r: deque() for r in self.last_scale_s}

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """One HPA evaluation per pool on the interval that just ended."""
        if self.cluster is None:
            raise BaselineError(f"{self.name}: call reset(context) before act()")
        snapshot = history[-1]
        return make_action({role: self._scale(role, snapshot.pools[role], snapshot.end_s)
                            for role in self.last_scale_s})

    def _scale(self, role: str, pool: PoolMetrics, now_s: float) -> int:
        assert self.cluster is not None
        s, current = self.settings, pool.replicas_ready + pool.replicas_starting
        desired = hpa_desired(current, metric_total(role, pool), s.target(role), s.tolerance) \
            if pool.replicas_ready > 0 else current
        window = self.recommendations[role]
        window.append((now_s, desired))
        while window and window[0][0] < now_s - s.scale_down_cooldown_s - 1e-9:
            window.popleft()
        if desired > current:
            desired = min(desired, max(current + 1, math.floor(current * s.max_scale_up_factor + 1e-9)))
        elif desired < current:
            cooling = now_s - self.last_scale_s[role] < s.scale_down_cooldown_s - 1e-9
            desired = current if cooling else min(current, max(count for _, count in window))
        new = bounded(self.cluster, role, desired)
        if new != current:
            self.last_scale_s[role] = now_s
        return new
