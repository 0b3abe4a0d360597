"""What-if analysis: change one thing about a scenario (GPU price, GPU type, cold start, load, tenant mix,
aggregated instead of disaggregated serving) and evaluate every policy on each variant.

A :class:`WhatIf` is one change; :func:`sweep` evaluates the base scenarios and one variant per value of
each swept field, all in one ``EvaluationPlan`` (so ``jobs`` workers share the work), and labels every
results row with the field and value it belongs to.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from disaggpilot.agent.analysis.tables import Row, done, summary_rows
from disaggpilot.agent.evaluation import EpisodeResult, EvaluationPlan, evaluate
from disaggpilot.env.catalog import load_gpu
from disaggpilot.env.cluster_config import ClusterConfig, PoolConfig
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig

SERVING_MODES = ("disaggregated", "aggregated")
"""Values of ``WhatIf.serving``."""
BASE = "base"
"""The ``axis`` and ``label`` of the unchanged scenarios in a sweep."""


@dataclass(frozen=True)
class WhatIf:
    """One change of a scenario; a field left at None keeps the scenario's value."""

    usd_per_gpu_hour: float | None = None
    """GPU price (USD per GPU-hour)."""
    hardware: str | None = None
    """GPU type, a ``configs/hardware/`` name (``h100-sxm``, ``h200``, ``b200``); its price applies unless the
    scenario or ``usd_per_gpu_hour`` sets one."""
    cold_start_s: float | None = None
    """Replica cold-start time (seconds)."""
    load_multiplier: float | None = None
    """Factor on every tenant's arrival rate."""
    tenant_mix: Sequence[float] | Mapping[str, float] | None = None
    """Factors on individual tenants' arrival rates: by position (``[2.0, 0.5]``: the first tenant doubled, the
    second halved, the rest unchanged) or by tenant name."""
    serving: str | None = None
    """``aggregated``: one colocated pool with the same GPUs instead of prefill and decode pools;
    ``disaggregated``: keep the scenario's pools (a disaggregated scenario must already have them)."""
    changed: tuple[str, ...] = field(init=False, default=())
    """Names of the fields set, in declaration order."""

    def __post_init__(self) -> None:
        for key in ("usd_per_gpu_hour", "cold_start_s"):
            value = getattr(self, key)
            require(value is None or value >= 0, f"what_if.{key}", value, "use a value >= 0, or null")
        require(self.load_multiplier is None or self.load_multiplier > 0, "what_if.load_multiplier",
                self.load_multiplier, "use a factor > 0, or null")
        factors = self._mix_factors()
        require(all(f > 0 for f in factors), "what_if.tenant_mix", self.tenant_mix, "use factors > 0")
        require(self.serving in (None, *SERVING_MODES), "what_if.serving", self.serving, f"use {SERVING_MODES}")
        if self.hardware is not None:
            load_gpu(self.hardware)  # an unknown GPU fails here, naming the catalog's types
        names = tuple(f.name for f in fields(self) if f.init and getattr(self, f.name) is not None)
        object.__setattr__(self, "changed", names)

    def _mix_factors(self) -> list[float]:
        mix = self.tenant_mix or []
        return [float(v) for v in (mix.values() if isinstance(mix, Mapping) else mix)]

    @property
    def label(self) -> str:
        """``field=value`` of every change, comma-separated; ``base`` when nothing changes."""
        return ",".join(f"{name}={_show(getattr(self, name))}" for name in self.changed) or BASE

    def apply(self, scenario: ScenarioConfig) -> ScenarioConfig:
        """A changed copy of ``scenario``, named ``<name>[<label>]``; the input is not modified.

        Raises:
            ConfigError: ``tenant_mix`` names a tenant the scenario lacks or has more factors than tenants,
                or ``serving=disaggregated`` on a cluster without prefill and decode pools.
        """
        world = copy.deepcopy(scenario)
        if self.changed:
            world.name = f"{scenario.name}[{self.label}]"
        world.hardware = self.hardware or world.hardware
        cluster = world.cluster
        cluster.usd_per_gpu_hour = self.usd_per_gpu_hour if self.usd_per_gpu_hour is not None else \
            cluster.usd_per_gpu_hour
        cluster.cold_start_s = self.cold_start_s if self.cold_start_s is not None else cluster.cold_start_s
        for tenant, factor in zip(world.tenants, self._tenant_factors(scenario), strict=True):
            tenant.arrival.rate_rps *= factor
            if tenant.trace is not None:
                tenant.trace.rate_multiplier *= factor
        if self.serving == "aggregated":
            world.cluster = aggregated(cluster)
        require(self.serving != "disaggregated" or cluster.prefill.enabled, "what_if.serving", self.serving,
                f"scenario {scenario.name!r} has no prefill/decode pools to keep")
        return world

    def _tenant_factors(self, scenario: ScenarioConfig) -> list[float]:
        names = [tenant.name for tenant in scenario.tenants]
        load = self.load_multiplier or 1.0
        mix = self.tenant_mix or []
        if isinstance(mix, Mapping):
            unknown = sorted(set(mix) - set(names))
            require(not unknown, "what_if.tenant_mix", dict(mix), f"name tenants of {scenario.name!r}: {names}")
            return [load * float(mix.get(name, 1.0)) for name in names]
        require(len(mix) <= len(names), "what_if.tenant_mix", list(mix),
                f"give at most {len(names)} factors (the tenants of {scenario.name!r}: {names})")
        return [load * (float(mix[i]) if i < len(mix) else 1.0) for i in range(len(names))]


def price_of(scenario: ScenarioConfig) -> float:
    """The GPU price in force in ``scenario`` (USD per GPU-hour): its override, else its GPU type's."""
    override = scenario.cluster.usd_per_gpu_hour
    return float(override) if override is not None else load_gpu(scenario.hardware).usd_per_gpu_hour


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "+".join(f"{key}x{_show(v)}" for key, v in value.items())
    if isinstance(value, list | tuple):
        return "x".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def aggregated(cluster: ClusterConfig) -> ClusterConfig:
    """``cluster`` served without disaggregation: one pool running chunked prefill and decode together.

    The pool gets the same GPUs to start with (prefill + decode replicas at the prefill pool's tensor-parallel
    degree), the prefill pool's token budget, the decode pool's batch cap, and 1 .. (GPU budget / TP)
    replicas. A cluster that is already aggregated-only is returned unchanged (as a copy).
    """
    result = copy.deepcopy(cluster)
    if not cluster.prefill.enabled:
        return result
    tp = cluster.prefill.tp
    most = max(1, cluster.gpu_budget // tp)
    start = min(most, max(1, math.ceil(cluster.initial_gpus() / tp)))
    result.aggregated = PoolConfig(enabled=True, replicas=start, tp=tp, min_replicas=1, max_replicas=most,
                                   max_num_batched_tokens=cluster.prefill.max_num_batched_tokens,
                                   max_num_seqs=cluster.decode.max_num_seqs)
    result.prefill = PoolConfig(enabled=False, replicas=0, min_replicas=0)
    result.decode = PoolConfig(enabled=False, replicas=0, min_replicas=0)
    result.__post_init__()  # validate the new pools and the budget
    return result


@dataclass
class SweepResult:
    """What :func:`sweep` ran and got back.

    Attributes:
        variants: variant scenario name → (base scenario name, axis, value); ``axis`` is ``base`` for the
            unchanged scenarios.
        results: every episode, in plan order (failed ones carry ``error``).
    """

    variants: dict[str, tuple[str, str, Any]]
    results: list[EpisodeResult]

    def rows(self) -> list[Row]:
        """One row per (variant, policy) over seeds (``agent.analysis.tables.summary_rows``), with
        ``base_scenario``, ``axis`` and ``value`` added."""
        rows = summary_rows(self.results)
        for row in rows:
            base, axis, value = self.variants[row["scenario"]]
            row.update(base_scenario=base, axis=axis, value=value)
        return rows

    def failures(self) -> list[Row]:
        """Failed episodes: policy, scenario, seed and the error's last line (e.g. a policy that cannot drive
        an aggregated cluster)."""
        return [{"policy": r.policy, "scenario": r.scenario, "seed": r.seed,
                 "error": (r.error or "").strip().splitlines()[-1] if r.error else ""}
                for r in self.results if r.error is not None]

    def finished(self) -> list[EpisodeResult]:
        """The episodes that finished."""
        return done(self.results)


def variants(scenarios: Sequence[ScenarioConfig], axes: Mapping[str, Sequence[Any]],
             include_base: bool = True) -> list[tuple[ScenarioConfig, str, str, Any]]:
    """(variant scenario, base name, axis, value) for the base scenarios and every value of every axis.

    Raises:
        ConfigError: an axis is not a field of :class:`WhatIf`, or a value is invalid for it.
    """
    known = [f.name for f in fields(WhatIf) if f.init]
    unknown = sorted(set(axes) - set(known))
    if unknown:
        raise ConfigError(f"what_if axes {unknown} are unknown: use some of {known}")
    cells = [(s, s.name, BASE, None) for s in scenarios] if include_base else []
    for axis, values in axes.items():
        for value in values:
            change = WhatIf(**{axis: value})
            cells += [(change.apply(s), s.name, axis, value) for s in scenarios]
    return cells


def sweep(scenarios: Sequence[ScenarioConfig], axes: Mapping[str, Sequence[Any]],
          policies: Mapping[str, Mapping[str, Any]], seeds: Sequence[int] = (0,), env: EnvConfig | None = None,
          reward: RewardConfig | None = None, jobs: int = 1, include_base: bool = True) -> SweepResult:
    """Evaluate ``policies`` on the base scenarios and on one variant per value of each axis.

    Args:
        scenarios: the base scenarios (already cut to the wanted duration).
        axes: a :class:`WhatIf` field → the values to try, e.g. ``{"hardware": ["h200", "b200"]}``.
        policies: policy name → config (``EvaluationPlan.policies``).
        seeds: episode seeds; every variant sees the same ones.
        env: environment settings (default ``EnvConfig()``, the shipped bundle's).
        reward: reward settings.
        jobs: worker processes (1 runs in-process).
        include_base: evaluate the unchanged scenarios too (axis ``base``).

    A value equal to the base (e.g. the scenario's own GPU type) gets a variant of its own all the same.
    """
    cells = variants(scenarios, axes, include_base)
    names = [cell[0].name for cell in cells]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    require(not duplicates, "what_if axes", dict(axes), f"list each value once (repeated: {duplicates})")
    plan = EvaluationPlan(policies=policies, scenarios=[cell[0] for cell in cells], seeds=list(seeds),
                          env=env or EnvConfig(), reward=reward or RewardConfig(), jobs=jobs)
    return SweepResult({cell[0].name: (cell[1], cell[2], cell[3]) for cell in cells}, evaluate(plan))
