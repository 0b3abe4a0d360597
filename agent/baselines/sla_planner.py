"""``sla_planner``: the classic (earlier) NVIDIA Dynamo SLA planner in throughput mode.

The planner as Dynamo first shipped it (``_compute_replica_requirements``): a throughput plan every adjustment
interval, corrected by observed/profiled TTFT and ITL. Today's Dynamo planner, which keeps this plan only as a
lower bound under load-based scaling and drops the correction factors, is ``dynamo_planner``
(:mod:`agent.baselines.dynamo_planner`).

Every adjustment interval it predicts the next interval's request count, mean prompt (ISL) and mean output
(OSL) length, and sizes the pools from a profile of one replica (see :mod:`agent.sizing.profile`)::

    p = observed TTFT / profiled TTFT(observed ISL)                (1.0 without traffic)
    d = observed ITL  / profiled ITL(observed concurrency, ISL + OSL/2)
    prefill = ceil(requests · ISL / interval · min(1, p) / prefill throughput per GPU(ISL) / GPUs per replica)
    decode  = ceil(requests · OSL / interval / best decode throughput per GPU(ITL target / d, ISL + OSL/2)
                   / GPUs per replica)

as Dynamo's planner design describes it: the decode correction tightens the ITL target the throughput is
read at (so d > 1 asks for more replicas). Both counts are at least one; over the GPU budget both shrink in
proportion; each moves at most ``max_replica_change`` per adjustment. The TTFT and ITL targets are the
strictest tenant's. Targets are held between adjustments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings, make_action
from disaggpilot.agent.baselines.predictors import PREDICTORS, Predictor, PredictorSpec, make_predictor
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.agent.sizing.pools import bounded, current_replicas
from disaggpilot.agent.sizing.profile import PerfProfile, PlannerProfile
from disaggpilot.agent.sizing.signals import Load, observed_concurrency, observed_itl_s, observed_load, observed_ttft_s
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.metrics import MetricsSnapshot


@dataclass
class SlaPlannerSettings:
    """Settings of :class:`SlaPlannerPolicy` (``configs/agent/sla_planner.yaml``)."""

    adjustment_interval_s: float = 180.0
    """Time between adjustments (seconds); a multiple of the environment's control interval (Dynamo: 180)."""
    predictor: str = "constant"
    """Load predictor: ``constant`` (last value), ``moving_average`` or ``holt`` (linear trend)."""
    moving_average_window: int = 3
    """Adjustment intervals averaged by the ``moving_average`` predictor (intervals)."""
    holt_alpha: float = 0.5
    """Level smoothing of the ``holt`` predictor, in (0, 1]."""
    holt_beta: float = 0.3
    """Trend smoothing of the ``holt`` predictor, in (0, 1]."""
    correction: bool = True
    """Apply the TTFT and ITL correction factors (Dynamo's ``--no-correction`` sets False)."""
    max_replica_change: int = 8
    """Largest change of either pool per adjustment (replicas)."""
    ttft_target_s: float | None = None
    """TTFT target (seconds); None uses the strictest tenant's ``ttft_slo_s``."""
    itl_target_s: float | None = None
    """ITL target (seconds per token); None uses the strictest tenant's ``tpot_slo_s``."""

    def __post_init__(self) -> None:
        key = "agent.sla_planner"
        require(self.adjustment_interval_s > 0, f"{key}.adjustment_interval_s", self.adjustment_interval_s,
                "use a positive interval in seconds (a multiple of env.interval_s)")
        require(self.predictor in PREDICTORS, f"{key}.predictor", self.predictor, f"use one of {PREDICTORS}")
        require(self.max_replica_change >= 1, f"{key}.max_replica_change", self.max_replica_change, "use >= 1")
        for name in ("ttft_target_s", "itl_target_s"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{key}.{name}", value,
                    "use a positive target in seconds, or null for the strictest tenant's SLO")
        make_predictor(self.predictor_spec())  # validates window, alpha and beta

    def predictor_spec(self) -> PredictorSpec:
        """The predictor these settings describe."""
        return PredictorSpec(self.predictor, self.moving_average_window, self.holt_alpha, self.holt_beta)


def correction_factor(observed_s: float, profiled_s: float) -> float:
    """``observed / profiled``; 1.0 when either is missing (no traffic) or not positive."""
    ratio = observed_s / profiled_s if profiled_s > 0 else math.nan
    return ratio if math.isfinite(ratio) and ratio > 0 else 1.0


def plan_replicas(load: Load, interval_s: float, profile: PlannerProfile, itl_target_s: float,
                  p_correction: float = 1.0, d_correction: float = 1.0) -> tuple[int, int]:
    """Dynamo's replica formulas (module docstring): (prefill, decode), each at least one.

    Args:
        load: predicted requests, mean prompt and mean output length of the next interval.
        interval_s: the adjustment interval the load arrives in (seconds).
        profile: one replica's profile.
        itl_target_s: ITL target before correction (seconds).
        p_correction: observed / profiled TTFT.
        d_correction: observed / profiled ITL.
    """
    isl, osl = max(load.prompt_tokens, 0.0), max(load.output_tokens, 0.0)
    prefill_load = load.requests * isl / interval_s * min(1.0, p_correction)
    prefill = prefill_load / profile.prefill_throughput_per_gpu(isl) / profile.prefill_gpus
    decode_thpt = profile.best_decode_throughput_per_gpu(itl_target_s / d_correction, isl + osl / 2)
    decode = load.requests * osl / interval_s / decode_thpt / profile.decode_gpus
    return max(1, math.ceil(prefill - 1e-9)), max(1, math.ceil(decode - 1e-9))


def fit_gpu_budget(prefill: int, decode: int, cluster: ClusterConfig) -> tuple[int, int]:
    """Scale both counts down in proportion when they need more GPUs than ``cluster.gpu_budget``."""
    tp_p, tp_d, budget = cluster.prefill.tp, cluster.decode.tp, cluster.gpu_budget
    if prefill * tp_p + decode * tp_d <= budget:
        return prefill, decode
    scale = budget / (prefill * tp_p + decode * tp_d)
    prefill = max(1, math.floor(prefill * scale))
    return prefill, max(1, (budget - prefill * tp_p) // tp_d)


def limit_change(target: int, current: int, max_change: int) -> int:
    """``target`` moved at most ``max_change`` away from ``current``."""
    return max(current - max_change, min(current + max_change, target))


class SlaPlannerPolicy:
    """The classic Dynamo SLA planner (throughput mode) over the prefill and decode pools.

    Args:
        profile: the replica profile; None computes it from the episode's scenario at ``reset``.
        **params: fields of :class:`SlaPlannerSettings`.
    """

    name = "sla_planner"

    def __init__(self, profile: PlannerProfile | None = None, **params: Any) -> None:
        self.settings = build_settings(SlaPlannerSettings, params, self.name)
        self.fixed_profile = profile
        self.context: PolicyContext | None = None

    def reset(self, context: PolicyContext) -> None:
        """Profile the model, set the targets and start fresh predictors."""
        ratio = self.settings.adjustment_interval_s / context.interval_s
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ConfigError(f"agent.{self.name}.adjustment_interval_s={self.settings.adjustment_interval_s!r} "
                              f"is invalid: use a multiple of env.interval_s={context.interval_s}")
        self.context, self.every = context, round(ratio)
        self.profile = self.fixed_profile or PerfProfile(context.scenario)
        tenants = context.scenario.tenants
        self.ttft_target_s = self.settings.ttft_target_s or min(t.ttft_slo_s for t in tenants)
        self.itl_target_s = self.settings.itl_target_s or min(t.tpot_slo_s for t in tenants)
        spec = self.settings.predictor_spec()
        self.predictors: tuple[Predictor, ...] = tuple(make_predictor(spec) for _ in range(3))
        self.targets: dict[str, int] | None = None
        self.corrections = (1.0, 1.0)

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """Adjust on the adjustment interval's boundaries; hold the last targets in between."""
        if self.context is None:
            raise BaselineError(f"{self.name}: call reset(context) before act()")
        steps = len(history) - 1
        if steps % self.every == 0:
            window = list(history[max(1, len(history) - self.every):]) if steps > 0 else []
            self._observe(window)
            load = self.forecast(history)
            if load is not None:
                self.targets = self._plan(load, history[-1])
        if self.targets is None:
            return ClusterAction.replicas(prefill=current_replicas(history[-1], "prefill"),
                                          decode=current_replicas(history[-1], "decode"))
        return make_action(self.targets)

    def forecast(self, history: Sequence[MetricsSnapshot]) -> Load | None:
        """The next adjustment interval's load from the predictors; None before they have a forecast."""
        load = Load(*(predictor.predict() for predictor in self.predictors))
        known = all(math.isfinite(v) for v in (load.requests, load.prompt_tokens, load.output_tokens))
        return Load(max(0.0, load.requests), load.prompt_tokens, load.output_tokens) if known else None

    def _observe(self, window: Sequence[MetricsSnapshot]) -> None:
        """Feed the predictors and update the correction factors from one adjustment interval."""
        if not window:
            return
        load = observed_load(window)
        self.predictors[0].observe(load.requests)
        if math.isfinite(load.prompt_tokens) and math.isfinite(load.output_tokens):
            self.predictors[1].observe(load.prompt_tokens)
            self.predictors[2].observe(load.output_tokens)
            self.corrections = self._corrections(window, load) if self.settings.correction else (1.0, 1.0)

    def _corrections(self, window: Sequence[MetricsSnapshot], load: Load) -> tuple[float, float]:
        profiled_ttft = self.profile.prefill_ttft_s(load.prompt_tokens)
        concurrency = observed_concurrency(window)
        context = load.prompt_tokens + load.output_tokens / 2
        profiled_itl = self.profile.decode_itl_s(concurrency if math.isfinite(concurrency) else 1.0, context)
        return (correction_factor(observed_ttft_s(window), profiled_ttft),
                correction_factor(observed_itl_s(window), profiled_itl))

    def _plan(self, load: Load, snapshot: MetricsSnapshot) -> dict[str, int]:
        assert self.context is not None
        cluster = self.context.scenario.cluster
        prefill, decode = plan_replicas(load, self.settings.adjustment_interval_s, self.profile,
                                        self.itl_target_s, *self.corrections)
        prefill, decode = fit_gpu_budget(prefill, decode, cluster)
        wanted, step = {"prefill": prefill, "decode": decode}, self.settings.max_replica_change
        return {role: bounded(cluster, role, limit_change(count, current_replicas(snapshot, role), step))
                for role, count in wanted.items()}
