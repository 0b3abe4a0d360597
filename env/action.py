"""The environment's action: a ``MultiDiscrete`` of replica changes and knob levels, with masks.

Dimensions, in order: one replica change per enabled pool (prefill, decode, then aggregated when the
cluster has that pool), the prefill token-budget level and the decode batch-cap level. A change is an index
into ``-max_step..+max_step``; a level is an index into the configured list. The budget level also sets the
aggregated pool's token budget, and the cap level its batch cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import check_types, require
from disaggpilot.env.metrics import MetricsSnapshot

SCALED_ROLES = ("prefill", "decode", "aggregated")


@dataclass
class ActionConfig:
    """What a policy may change each interval."""

    max_step: int = 2
    """Largest replica change per pool per interval (replicas); changes range over -max_step..+max_step."""
    token_budget_levels: list[int] = field(default_factory=lambda: [2048, 4096, 8192, 16384])
    """Prefill token budgets to choose from (tokens per iteration; vLLM ``--max-num-batched-tokens``)."""
    batch_cap_levels: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    """Decode batch caps to choose from (sequences per replica; vLLM ``--max-num-seqs``)."""

    def __post_init__(self) -> None:
        check_types(self, "env.action")
        require(1 <= self.max_step <= 16, "env.action.max_step", self.max_step, "use 1..16 replicas")
        for key in ("token_budget_levels", "batch_cap_levels"):
            levels = list(getattr(self, key))
            require(len(levels) >= 1 and all(int(v) >= 1 for v in levels), f"env.action.{key}", levels,
                    "give at least one positive level")
            require(levels == sorted(set(levels)), f"env.action.{key}", levels, "list levels increasing, no repeats")
            setattr(self, key, [int(v) for v in levels])


class ActionCodec:
    """Turns ``MultiDiscrete`` indices into ``ClusterAction`` targets, and computes masks.

    Args:
        config: the action settings.
        cluster: the cluster (its enabled pools, bounds, tensor-parallel degrees and GPU budget).
    """

    def __init__(self, config: ActionConfig, cluster: ClusterConfig) -> None:
        self.config, self.cluster = config, cluster
        self.roles = tuple(r for r in SCALED_ROLES if getattr(cluster, r).enabled)
        self.steps = 2 * config.max_step + 1
        self.nvec = [self.steps for _ in self.roles] + [len(config.token_budget_levels),
                                                        len(config.batch_cap_levels)]
        self.names = [f"{role}_replica_change" for role in self.roles] + ["prefill_token_budget_level",
                                                                          "decode_batch_cap_level"]

    def knob_levels(self, snapshot: MetricsSnapshot) -> tuple[int, int]:
        """The level indices nearest to the knobs in force (prefill budget, decode cap)."""
        budget_pool = snapshot.pools.get("prefill") or snapshot.pools.get("aggregated")
        cap_pool = snapshot.pools.get("decode") or snapshot.pools.get("aggregated")
        budget = budget_pool.max_num_batched_tokens if budget_pool else 0
        cap = cap_pool.max_num_seqs if cap_pool else 0
        return _nearest(self.config.token_budget_levels, budget), _nearest(self.config.batch_cap_levels, cap)

    def neutral(self, snapshot: MetricsSnapshot) -> np.ndarray:
        """The action that changes nothing (the knobs' current levels)."""
        budget_level, cap_level = self.knob_levels(snapshot)
        return np.array([self.config.max_step] * len(self.roles) + [budget_level, cap_level], dtype=np.int64)

    def targets(self, snapshot: MetricsSnapshot) -> dict[str, int]:
        """Replicas currently asked for per pool (ready plus starting)."""
        return {role: snapshot.pools[role].replicas_ready + snapshot.pools[role].replicas_starting
                for role in self.roles}

    def decode(self, action: np.ndarray, snapshot: MetricsSnapshot) -> tuple[ClusterAction, bool]:
        """The targets an action asks for, clipped to bounds and the GPU budget; True when clipped."""
        current = self.targets(snapshot)
        wanted = {role: current[role] + int(action[i]) - self.config.max_step for i, role in enumerate(self.roles)}
        bounded = {role: self._bounded(role, count) for role, count in wanted.items()}
        fitted = self._fit_budget(bounded, current, snapshot)
        budget = self.config.token_budget_levels[int(action[len(self.roles)])]
        cap = self.config.batch_cap_levels[int(action[len(self.roles) + 1])]
        pools = {role: PoolTarget(replicas=fitted[role],
                                  max_num_batched_tokens=budget if role != "decode" else None,
                                  max_num_seqs=cap if role != "prefill" else None)
                 for role in self.roles}
        return ClusterAction(pools), fitted != wanted

    def clip(self, action: ClusterAction, snapshot: MetricsSnapshot) -> tuple[ClusterAction, bool]:
        """Targets clipped to each pool's bounds and the GPU budget; unset fields keep current values."""
        current = self.targets(snapshot)
        wanted = {role: _replicas(action, role, current[role]) for role in self.roles}
        fitted = self._fit_budget({role: self._bounded(role, count) for role, count in wanted.items()},
                                  current, snapshot)
        pools = {}
        for role in self.roles:
            target = action.pools.get(role, PoolTarget())
            pools[role] = PoolTarget(replicas=fitted[role], max_num_batched_tokens=target.max_num_batched_tokens,
                                     max_num_seqs=target.max_num_seqs)
        return ClusterAction(pools), fitted != wanted

    def levels_of(self, action: ClusterAction, snapshot: MetricsSnapshot) -> tuple[int, int]:
        """The level indices nearest to the knobs an action sets (current ones where it sets none)."""
        budget_level, cap_level = self.knob_levels(snapshot)
        for target in action.pools.values():
            if target.max_num_batched_tokens is not None:
                budget_level = _nearest(self.config.token_budget_levels, target.max_num_batched_tokens)
            if target.max_num_seqs is not None:
                cap_level = _nearest(self.config.batch_cap_levels, target.max_num_seqs)
        return budget_level, cap_level

    def masks(self, snapshot: MetricsSnapshot) -> np.ndarray:
        """One boolean per choice of every dimension (flattened, as MaskablePPO expects).

        A change is allowed when the resulting count stays within the pool's bounds and, for an increase,
        the GPUs billed (draining replicas included) plus the new ones fit the budget, the other pools
        unchanged. No change is always allowed.
        """
        current, free = self.targets(snapshot), self.cluster.gpu_budget - snapshot.gpus_billed()
        parts = []
        for role in self.roles:
            pool = getattr(self.cluster, role)
            changes = np.arange(-self.config.max_step, self.config.max_step + 1)
            after = current[role] + changes
            allowed = (after >= pool.min_replicas) & (after <= pool.max_replicas) & (changes * pool.tp <= free)
            allowed |= changes == 0
            parts.append(allowed)
        parts.append(np.ones(len(self.config.token_budget_levels), dtype=bool))
        parts.append(np.ones(len(self.config.batch_cap_levels), dtype=bool))
        return np.concatenate(parts)

    def _bounded(self, role: str, count: int) -> int:
        pool = getattr(self.cluster, role)
        return max(pool.min_replicas, min(pool.max_replicas, count))

    def _fit_budget(self, wanted: dict[str, int], current: dict[str, int], snapshot: MetricsSnapshot
                    ) -> dict[str, int]:
        """Trim increases, largest first, until the GPUs billed fit the budget."""
        fitted = dict(wanted)
        def over() -> int:
            draining = sum(p.replicas_draining * p.gpus_per_replica for p in snapshot.pools.values())
            asked = sum(max(fitted[r], 0) * getattr(self.cluster, r).tp for r in self.roles)
            return draining + asked - self.cluster.gpu_budget
        while over() > 0:
            growing = [r for r in self.roles if fitted[r] > current[r]]
            if not growing:
                break
            role = max(growing, key=lambda r: fitted[r] - current[r])
            fitted[role] -= 1
        return fitted


def _replicas(action: ClusterAction, role: str, current: int) -> int:
    target = action.pools.get(role)
    return current if target is None or target.replicas is None else target.replicas


def _nearest(levels: list[int], value: int) -> int:
    return int(np.argmin([abs(level - value) for level in levels]))
