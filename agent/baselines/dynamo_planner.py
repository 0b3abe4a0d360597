"""``dynamo_planner``: today's NVIDIA Dynamo planner in SLA mode (throughput floor plus load-based scaling).

Follows ai-dynamo/dynamo as of early 2026 (the ``PlannerStateMachine`` refactor; files read at these commits:
``components/src/dynamo/planner/core/throughput_scaling.py`` @4d3f672, ``core/load_scaling.py`` @936d819,
``core/state_machine.py`` @f2d1bd3, ``core/perf_model/prefill.py`` @a2b2ed2, ``core/perf_model/decode.py``
@439d645, ``config/defaults.py`` @bb6bb8f, ``config/planner_config.py`` @34ede16), run with
``optimization_target: sla`` and both ``enable_throughput_scaling`` and ``enable_load_scaling`` on. The classic
planner (throughput plan with TTFT/ITL correction factors only) is ``sla_planner``.

Two loops, each on its own cadence:

- **Throughput loop** (every ``throughput_adjustment_interval_s``, Dynamo's default 180 s): forecast the next
  interval's requests, mean prompt (ISL) and output (OSL) lengths, and plan
  ``prefill = ceil(rps / (1 / TTFT(ISL)))`` (one prompt alone, chunked by the token budget) and
  ``decode = ceil(rps / (best batch within the ITL target / (OSL · step time)))`` (Little's law), each at least
  ``min_endpoint``. Today's planner has no correction factors. With load scaling on, this plan is only a
  *lower bound* for the load loop; it changes no replica by itself. This is :func:`plan_replicas` of
  :mod:`agent.baselines.sla_planner` with neutral corrections (the same formulas rearranged).
- **Load loop** (Dynamo: every 5 s): per engine, estimate the next request's TTFT (the queued prompt tokens
  plus one mean prompt, chunked by ``max_num_batched_tokens``) and the next decode step's ITL (the scheduled
  and queued KV tokens plus one mean sequence, one more sequence). When the estimate of *every* engine is
  above the target, that pool goes to ready replicas + 1; when there is more than one and every estimate is
  below ``load_scaling_down_sensitivity`` × target, to ready replicas − 1. When neither pool moves nothing is
  sent; otherwise both pools go to at least the throughput lower bound and ``min_endpoint``, then into the GPU
  budget (both shrink in proportion). A pool without a decision is set to its *ready* count, as in Dynamo.

Adaptations to this environment (each one the closest reading of the source):

- The load loop runs once per control interval (``env.interval_s``, 30 s by default), not every 5 s. Its
  decision is relative to *ready* replicas and a replica's cold start lasts minutes, so Dynamo's six 5-second
  ticks of a 30-second interval ask for the same count while a new replica starts; what differs is the
  reaction delay (up to one interval) and that the estimates read the interval's end.
- The snapshots give each pool's gauges summed (running, waiting) or averaged (KV usage) over its ready
  replicas, not per engine; with requests spread evenly by the router, "every engine" is the mean engine.
  Queued prefill tokens are waiting requests × the mean prompt length; queued decode KV is waiting requests ×
  the mean prompt length; scheduled decode KV is KV usage × one replica's KV capacity.
- Dynamo fits per-iteration regressions to live forward-pass metrics, bootstrapped from a pre-deployment
  profile; here both the throughput plan and the estimates read the scenario's performance model
  (:class:`agent.sizing.profile.PerfProfile`), i.e. a perfectly fitted regression.
- Dynamo's default load predictor is ARIMA; this project offers ``constant``, ``moving_average`` and ``holt``
  (the predictors of ``sla_planner``), ``constant`` by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings, make_action
from disaggpilot.agent.baselines.predictors import PREDICTORS, PredictorSpec, make_predictor
from disaggpilot.agent.baselines.sla_planner import SlaPlannerPolicy, fit_gpu_budget
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.agent.sizing.pools import bounded, current_replicas
from disaggpilot.agent.sizing.profile import LoadProfile, PerfProfile
from disaggpilot.agent.sizing.signals import observed_load
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.metrics import KV_USAGE, RUNNING, WAITING, MetricsSnapshot, PoolMetrics

_UNLIMITED_CHANGE = 1_000_000  # today's planner has no per-adjustment step limit


@dataclass
class DynamoPlannerSettings:
    """Settings of :class:`DynamoPlannerPolicy` (``configs/policy/dynamo_planner.yaml``); defaults are Dynamo's."""

    throughput_adjustment_interval_s: float = 180.0
    """Time between throughput plans (seconds); a multiple of ``env.interval_s`` (Dynamo: 180)."""
    throughput_scaling: bool = True
    """Run the throughput loop (Dynamo's ``enable_throughput_scaling``)."""
    load_scaling: bool = True
    """Run the load loop every control interval (Dynamo's ``enable_load_scaling``, SLA mode); without it the
    throughput plan is applied directly."""
    load_scaling_down_sensitivity: float = 0.8
    """Scale a pool down when every estimate is below this fraction of its target (Dynamo: 80 %)."""
    min_endpoint: int = 1
    """Fewest replicas of either pool (replicas; Dynamo: 1)."""
    predictor: str = "constant"
    """Load predictor: ``constant`` (last value), ``moving_average`` or ``holt`` (Dynamo's default: ARIMA)."""
    moving_average_window: int = 3
    """Throughput intervals averaged by the ``moving_average`` predictor (intervals)."""
    holt_alpha: float = 0.5
    """Level smoothing of the ``holt`` predictor, in (0, 1]."""
    holt_beta: float = 0.3
    """Trend smoothing of the ``holt`` predictor, in (0, 1]."""
    ttft_target_s: float | None = None
    """TTFT target (seconds); None uses the strictest tenant's ``ttft_slo_s``."""
    itl_target_s: float | None = None
    """ITL target (seconds per token); None uses the strictest tenant's ``tpot_slo_s``."""

    def __post_init__(self) -> None:
        key = "agent.dynamo_planner"
        require(self.throughput_scaling or self.load_scaling, f"{key}.load_scaling", self.load_scaling,
                "enable throughput_scaling, load_scaling or both")
        require(0 < self.load_scaling_down_sensitivity <= 1, f"{key}.load_scaling_down_sensitivity",
                self.load_scaling_down_sensitivity, "use a fraction in (0, 1] (Dynamo's 80 is 0.8)")
        require(self.min_endpoint >= 1, f"{key}.min_endpoint", self.min_endpoint, "use >= 1 replica")
        require(self.throughput_adjustment_interval_s > 0, f"{key}.throughput_adjustment_interval_s",
                self.throughput_adjustment_interval_s, "use a positive multiple of env.interval_s")
        require(self.predictor in PREDICTORS, f"{key}.predictor", self.predictor, f"use one of {PREDICTORS}")
        for name in ("ttft_target_s", "itl_target_s"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{key}.{name}", value,
                    "use a positive target in seconds, or null for the strictest tenant's SLO")
        make_predictor(PredictorSpec(self.predictor, self.moving_average_window, self.holt_alpha, self.holt_beta))

    def throughput_settings(self) -> dict[str, Any]:
        """The throughput loop as ``sla_planner`` settings: no correction, no step limit."""
        return {"adjustment_interval_s": self.throughput_adjustment_interval_s, "predictor": self.predictor,
                "moving_average_window": self.moving_average_window, "holt_alpha": self.holt_alpha,
                "holt_beta": self.holt_beta, "correction": False, "max_replica_change": _UNLIMITED_CHANGE,
                "ttft_target_s": self.ttft_target_s, "itl_target_s": self.itl_target_s}


@dataclass(frozen=True)
class PoolLoad:
    """One engine's load as the pool's end-of-interval gauges give it (the mean ready replica).

    Attributes:
        ready: ready replicas.
        running: running sequences per replica.
        waiting: waiting requests per replica.
        kv_usage: KV-cache usage (fraction).
    """

    ready: int
    running: float
    waiting: float
    kv_usage: float

    @classmethod
    def of(cls, pool: PoolMetrics) -> PoolLoad:
        """The mean engine of ``pool`` (gauges summed over ready replicas, KV usage their mean)."""
        ready = max(1, pool.replicas_ready)
        return cls(pool.replicas_ready, pool.gauges.get(RUNNING, 0.0) / ready, pool.gauges.get(WAITING, 0.0) / ready,
                   pool.gauges.get(KV_USAGE, 0.0))


def load_decision(estimate_s: float, target_s: float, ready: int, sensitivity: float, min_endpoint: int) -> int | None:
    """Dynamo's per-pool load rule: ready + 1 above the target, ready − 1 (when more than one, at least
    ``min_endpoint``) below ``sensitivity`` × target, else None (no change)."""
    if estimate_s > target_s:
        return ready + 1
    if ready > 1 and estimate_s < target_s * sensitivity:
        return max(ready - 1, min_endpoint)
    return None


def estimate_ttft_s(profile: LoadProfile, engine: PoolLoad, prompt_tokens: float) -> float:
    """The next request's TTFT on the mean prefill engine: its queue, then one mean prompt (seconds)."""
    return profile.queued_ttft_s(engine.waiting * prompt_tokens, prompt_tokens)


def estimate_itl_s(profile: LoadProfile, engine: PoolLoad, prompt_tokens: float, output_tokens: float) -> float:
    """The next decode step on the mean decode engine with one more sequence (seconds).

    Scheduled KV is usage × capacity, queued KV the waiting requests' prompts, plus one mean sequence (the
    scheduled KV per running sequence, or ISL + OSL / 2 with none running).
    """
    scheduled = engine.kv_usage * profile.decode_kv_capacity_tokens
    mean_sequence = scheduled / engine.running if engine.running > 0 else prompt_tokens + output_tokens / 2
    return profile.decode_step_s(engine.running + 1, scheduled + engine.waiting * prompt_tokens + mean_sequence)


class DynamoPlannerPolicy:
    """Today's Dynamo planner (module docstring) over the prefill and decode pools.

    Args:
        profile: the replica profile; None computes it from the episode's scenario at ``reset``.
        **params: fields of :class:`DynamoPlannerSettings`.
    """

    name = "dynamo_planner"

    def __init__(self, profile: LoadProfile | None = None, **params: Any) -> None:
        self.settings = build_settings(DynamoPlannerSettings, params, self.name)
        self.fixed_profile = profile
        self.throughput = SlaPlannerPolicy(profile=profile, **self.settings.throughput_settings())
        self.context: PolicyContext | None = None

    def reset(self, context: PolicyContext) -> None:
        """Profile the model, set the targets, start fresh predictors and a lower bound of ``min_endpoint``."""
        ratio = self.settings.throughput_adjustment_interval_s / context.interval_s
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ConfigError(f"agent.{self.name}.throughput_adjustment_interval_s="
                              f"{self.settings.throughput_adjustment_interval_s!r} is invalid: use a multiple of "
                              f"env.interval_s={context.interval_s}")
        self.throughput.reset(context)
        self.context = context
        self.profile: LoadProfile = self.fixed_profile or PerfProfile(context.scenario)
        self.ttft_target_s, self.itl_target_s = self.throughput.ttft_target_s, self.throughput.itl_target_s
        self.targets: dict[str, int] | None = None
        self.lengths: tuple[float, float] | None = None

    def lower_bound(self) -> dict[str, int]:
        """The throughput loop's latest plan, or ``min_endpoint`` before its first."""
        floor = self.settings.min_endpoint
        planned = self.throughput.targets if self.settings.throughput_scaling else None
        return {role: max(floor, (planned or {}).get(role, floor)) for role in ("prefill", "decode")}

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """Run the throughput loop on its boundaries and the load loop every interval; hold targets otherwise."""
        if self.context is None:
            raise BaselineError(f"{self.name}: call reset(context) before act()")
        planned = self.throughput.act(observation, history) if self.settings.throughput_scaling else None
        if not self.settings.load_scaling:
            return planned if planned is not None else self._held(history[-1])
        self._observe_lengths(history[-1])
        decided = self.load_targets(history[-1])
        if decided is not None:
            self.targets = decided
        return self._held(history[-1])

    def load_targets(self, snapshot: MetricsSnapshot) -> dict[str, int] | None:
        """The load loop's targets from one snapshot, or None when neither pool moves (or nothing is known)."""
        if self.lengths is None or snapshot.interval_s <= 0 or not {"prefill", "decode"} <= set(snapshot.pools):
            return None
        prefill, decode = PoolLoad.of(snapshot.pools["prefill"]), PoolLoad.of(snapshot.pools["decode"])
        if prefill.ready == 0 and decode.ready == 0:
            return None
        s, (isl, osl) = self.settings, self.lengths
        wanted = {
            "prefill": load_decision(estimate_ttft_s(self.profile, prefill, isl), self.ttft_target_s, prefill.ready,
                                     s.load_scaling_down_sensitivity, s.min_endpoint) if prefill.ready else None,
            "decode": load_decision(estimate_itl_s(self.profile, decode, isl, osl), self.itl_target_s, decode.ready,
                                    s.load_scaling_down_sensitivity, s.min_endpoint) if decode.ready else None}
        if all(count is None for count in wanted.values()):
            return None
        ready = {"prefill": prefill.ready, "decode": decode.ready}
        floor = self.lower_bound()
        final = {role: max(count if count is not None else ready[role], floor[role]) for role, count in wanted.items()}
        return self._fitted(final["prefill"], final["decode"])

    def _fitted(self, prefill: int, decode: int) -> dict[str, int]:
        assert self.context is not None
        cluster = self.context.scenario.cluster
        prefill, decode = fit_gpu_budget(prefill, decode, cluster)
        return {"prefill": bounded(cluster, "prefill", prefill), "decode": bounded(cluster, "decode", decode)}

    def _observe_lengths(self, snapshot: MetricsSnapshot) -> None:
        """Keep the latest known mean prompt and output lengths (Dynamo's moving averages of its engines')."""
        load = observed_load([snapshot])
        if math.isfinite(load.prompt_tokens) and math.isfinite(load.output_tokens):
            self.lengths = (max(1.0, load.prompt_tokens), max(1.0, load.output_tokens))

    def _held(self, snapshot: MetricsSnapshot) -> ClusterAction:
        if self.targets is None:
            return ClusterAction.replicas(prefill=current_replicas(snapshot, "prefill"),
                                          decode=current_replicas(snapshot, "decode"))
        return make_action(self.targets)
