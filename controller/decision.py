"""One decision of the loop, and its JSON record (one log line per decision).

The record summarises the inputs (per-tenant arrival rate and attainment, per-pool replicas and queue),
the policy's raw proposal, the fallback's, the shielded action, why it differs, the mode and the latency.
It holds aggregates only: no request contents, no credentials. Non-finite numbers become ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.metrics import GW_ARRIVED, KV_USAGE, WAITING, MetricsSnapshot

POLICY, FALLBACK, HOLD = "policy", "fallback", "hold"
"""Where a decision's action came from; ``hold`` applies nothing and keeps the current targets."""


@dataclass
class Decision:
    """What the loop decided in one interval, and how it went.

    Attributes:
        index: decision number, from 1.
        time_s: controller clock time of the decision (seconds).
        mode: ``shadow`` or ``active``.
        source: ``policy``, ``fallback`` or ``hold``.
        reason: why the policy was not used (a ``controller.validate.REASONS`` entry), None when it was.
        detail: what exactly went wrong, for the log.
        recovering: True while the fallback runs after its cause has cleared (before ``recovery_intervals``).
        snapshot: the snapshot scraped for this decision (None when the scrape failed).
        snapshot_valid: whether it passed validation.
        policy_action: the policy's raw proposal (None when it did not run or failed).
        fallback_action: the fallback planner's proposal (None when it did not run or failed).
        action: the shielded action (None for ``hold``).
        shield_reasons: the shield's rules that changed the proposal.
        latency_s: snapshot in hand → action chosen, excluding I/O (seconds).
        applied: whether the actuator applied ``action`` (active mode).
        actuator_error: the actuator's last error (type and message), if it failed.
        abandoned: leadership was lost between deciding and writing, so the rest of the action was not sent.
    """

    index: int
    time_s: float
    mode: str
    source: str = HOLD
    reason: str | None = None
    detail: str | None = None
    recovering: bool = False
    snapshot: MetricsSnapshot | None = None
    snapshot_valid: bool = False
    policy_action: ClusterAction | None = None
    fallback_action: ClusterAction | None = None
    action: ClusterAction | None = None
    shield_reasons: tuple[str, ...] = field(default_factory=tuple)
    latency_s: float = 0.0
    applied: bool = False
    actuator_error: str | None = None
    abandoned: bool = False

    @property
    def successful(self) -> bool:
        """A fresh valid snapshot, an action chosen, and applied when in active mode (for ``/readyz``)."""
        acted = self.action is not None and (self.mode == "shadow" or self.applied)
        return self.snapshot_valid and acted

    def record(self) -> dict[str, Any]:
        """The decision as a JSON-ready dict."""
        return {
            "decision": self.index, "time_s": round(self.time_s, 3), "mode": self.mode, "source": self.source,
            "reason": self.reason, "detail": self.detail, "recovering": self.recovering,
            "snapshot_valid": self.snapshot_valid,
            "inputs": summarize_inputs(self.snapshot) if self.snapshot is not None else None,
            "policy_action": action_dict(self.policy_action),
            "fallback_action": action_dict(self.fallback_action),
            "shielded_action": action_dict(self.action), "shield_reasons": list(self.shield_reasons),
            "applied": self.applied, "actuator_error": self.actuator_error, "abandoned": self.abandoned,
            "latency_ms": round(self.latency_s * 1000.0, 3),
        }


def finite(value: float) -> float | None:
    """``value`` rounded to 6 digits, or None when it is NaN or infinite (JSON has neither)."""
    return round(float(value), 6) if math.isfinite(value) else None


def summarize_inputs(snapshot: MetricsSnapshot) -> dict[str, Any]:
    """Per tenant arrival rate (requests/s) and attainment; per pool replicas, queue and KV usage."""
    interval = snapshot.interval_s
    tenants = {name: {"arrival_rps": finite(t.counters.get(GW_ARRIVED, math.nan) / interval) if interval > 0
                      else None, "attainment": finite(t.attainment())}
               for name, t in snapshot.tenants.items()}
    pools = {role: {"ready": p.replicas_ready, "starting": p.replicas_starting, "draining": p.replicas_draining,
                    "waiting": finite(p.gauges.get(WAITING, math.nan)),
                    "kv_usage": finite(p.gauges.get(KV_USAGE, math.nan))}
             for role, p in snapshot.pools.items()}
    return {"end_s": finite(snapshot.end_s), "tenants": tenants, "pools": pools}


def action_dict(action: ClusterAction | None) -> dict[str, dict[str, int | None]] | None:
    """Targets per pool as plain dicts, or None."""
    if action is None:
        return None
    return {role: {"replicas": t.replicas, "max_num_batched_tokens": t.max_num_batched_tokens,
                   "max_num_seqs": t.max_num_seqs} for role, t in action.pools.items()}


def replicas_of(action: ClusterAction) -> dict[str, int]:
    """The replica targets an action sets (pools without one are left out)."""
    return {role: t.replicas for role, t in action.pools.items() if t.replicas is not None}
