"""``static``: fixed replica counts and batch knobs for the whole episode.

The reference every operator starts from: provision once and never move. By default it keeps the
scenario's initial replicas and knobs; any of them can be pinned in its settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings, enabled_roles, make_action
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot


@dataclass
class StaticSettings:
    """Settings of :class:`StaticPolicy` (``configs/agent/static.yaml``)."""

    prefill_replicas: int | None = None
    """Prefill replicas for the whole episode (replicas); None keeps the scenario's initial count."""
    decode_replicas: int | None = None
    """Decode replicas for the whole episode (replicas); None keeps the scenario's initial count."""
    aggregated_replicas: int | None = None
    """Aggregated replicas, when the cluster has that pool (replicas); None keeps the initial count."""
    max_num_batched_tokens: int | None = None
    """Prefill token budget (tokens per iteration); None keeps the scenario's prefill pool setting."""
    max_num_seqs: int | None = None
    """Decode batch cap (sequences per replica); None keeps the scenario's decode pool setting."""

    def __post_init__(self) -> None:
        for key in ("prefill_replicas", "decode_replicas", "aggregated_replicas"):
            value = getattr(self, key)
            require(value is None or value >= 0, f"agent.static.{key}", value,
                    "use a replica count >= 0, or null for the scenario's initial count")
        for key in ("max_num_batched_tokens", "max_num_seqs"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"agent.static.{key}", value,
                    "use a value >= 1, or null for the scenario's setting")


class StaticPolicy:
    """Hold one configuration: the same targets every interval.

    Args:
        **params: fields of :class:`StaticSettings`.
    """

    name = "static"

    def __init__(self, **params: Any) -> None:
        self.settings = build_settings(StaticSettings, params, self.name)
        self._action: ClusterAction | None = None

    def reset(self, context: PolicyContext) -> None:
        """Resolve the configuration against the episode's cluster."""
        self._action = self.configuration(context.scenario.cluster)

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """The fixed targets (the environment clips them to bounds and the GPU budget)."""
        if self._action is None:
            raise BaselineError("static: call reset(context) before act()")
        return self._action

    def configuration(self, cluster: ClusterConfig) -> ClusterAction:
        """The targets this policy holds on ``cluster``: settings where given, the initial values elsewhere."""
        s = self.settings
        pinned = {"prefill": s.prefill_replicas, "decode": s.decode_replicas, "aggregated": s.aggregated_replicas}
        replicas: dict[str, int] = {}
        for role in enabled_roles(cluster):
            count = pinned[role]
            replicas[role] = int(count if count is not None else getattr(cluster, role).replicas)
        budget_pool = cluster.prefill if cluster.prefill.enabled else cluster.aggregated
        cap_pool = cluster.decode if cluster.decode.enabled else cluster.aggregated
        budget = s.max_num_batched_tokens or budget_pool.max_num_batched_tokens
        cap = s.max_num_seqs or cap_pool.max_num_seqs
        return make_action(replicas, budget, cap)
