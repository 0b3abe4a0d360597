"""The observation: a fixed, named, versioned vector built from ``MetricsSnapshot``s only.

Features are scale-free where possible (per replica, relative to the tenant's SLO, fractions of bounds), so
a policy trained on a small cluster can run a large one. Every feature is finite and clipped to
``[-CLIP, CLIP]``; a quantity that cannot be measured this interval (no request finished) keeps its last
value. Change the layout only together with ``OBSERVATION_VERSION``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from env.cluster_config import ClusterConfig
from env.errors import check_types, require
from env.metrics import (
    GW_ARRIVED,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_MET,
    GW_MISSED,
    GW_PROMPT_TOKENS,
    GW_TPOT,
    GW_TTFT,
    KV_USAGE,
    PREEMPTIONS,
    PROMPT_TOKENS,
    RUNNING,
    WAITING,
    MetricsSnapshot,
)
from env.reward import miss_budget_left
from env.workload import TenantSpec

OBSERVATION_VERSION = "v1"
CLIP = 10.0
POOL_ROLES = ("prefill", "decode", "aggregated")

TENANT_FEATURES: dict[str, str] = {
    "present": "1 when the slot holds a tenant, else 0 (and every other feature of the slot is 0)",
    "arrival_rate": "arrivals in the interval, requests per second / 10",
    "arrival_rate_per_replica": "arrivals per second per ready prompt-serving replica",
    "prompt_mean": "mean prompt of requests finished in the interval, tokens / 1000",
    "output_mean": "mean output of requests finished in the interval, tokens / 100",
    "ttft_p50_slo": "p50 time to first token / the tenant's TTFT objective",
    "ttft_p90_slo": "p90 time to first token / the tenant's TTFT objective",
    "tpot_p50_slo": "p50 time per output token / the tenant's TPOT objective",
    "tpot_p90_slo": "p90 time per output token / the tenant's TPOT objective",
    "attainment": "fraction of judged requests meeting the SLO in the interval",
    "attainment_gap": "target - attainment (positive when the tenant is below target)",
    "arrival_trend": "(rate - its moving average) / moving average: the load's direction",
    "in_flight_per_replica": "requests in the system per ready replica of all pools / 10",
}
POOL_FEATURES: dict[str, str] = {
    "present": "1 when the cluster has this pool",
    "ready": "ready replicas / the pool's max_replicas",
    "starting": "replicas in cold start / max_replicas",
    "draining": "draining replicas / max_replicas",
    "waiting_per_replica": "queued requests per serving replica / 10",
    "running_per_replica": "running requests per serving replica / max_num_seqs",
    "kv_usage": "mean KV-cache usage of ready replicas, 0..1",
    "prompt_throughput_per_replica": "prompt tokens computed per second per serving replica / 10000",
    "preemptions_per_replica": "preemptions per serving replica in the interval / 10",
}
CLUSTER_FEATURES: dict[str, str] = {
    "token_budget_level": "prefill token-budget level index / (levels - 1)",
    "batch_cap_level": "decode batch-cap level index / (levels - 1)",
    "gpu_fraction": "GPUs billed / GPU budget",
    "spend_rate": "spend in the interval, USD per hour / reference_usd_per_hour",
    "time_of_day_sin": "sin(2 pi t / period) (0 when time features are off)",
    "time_of_day_cos": "cos(2 pi t / period) (0 when time features are off)",
}
OPTIONAL_CLUSTER_FEATURES: dict[str, str] = {
    "cold_start": "a new replica's cold start (the cluster's cold_start_s) / reference_cold_start_s; only with "
                  "cold_start_feature, so bundles trained without it keep their layout",
}
BUDGET_TENANT_FEATURE = "miss_budget_left"
BUDGET_FEATURES: dict[str, str] = {
    f"tenant<i>/{BUDGET_TENANT_FEATURE}": "fraction of the misses the tenant's target allows for the requests judged "
                                          "so far in the episode still unspent (1: none missed, 0: at target, "
                                          "< 0: below it); 0 in an empty slot",
    "cluster/time_left": "fraction of the episode (the SLO period) still to run, 1..0",
}
"""Appended (after ``cold_start``) only with ``budget_features``, as in Sauté RL: the policy sees how much of each
tenant's episode-level SLO budget is left and how long it must last."""


@dataclass
class ObservationConfig:
    """Shape and scaling of the observation."""

    max_tenants: int = 4
    """Tenant slots; scenarios with fewer tenants leave slots empty (presence 0)."""
    time_features: bool = False
    """Include time-of-day features (sin, cos); off makes the policy time-invariant."""
    time_period_s: float = 86400.0
    """Period of the time-of-day features (seconds)."""
    trend_halflife_intervals: float = 6.0
    """Half-life of the arrival-rate moving average behind ``arrival_trend`` (intervals)."""
    reference_usd_per_hour: float = 100.0
    """Spend rate that maps to 1.0 in ``spend_rate`` (USD per hour)."""
    cold_start_feature: bool = False
    """Append ``cluster/cold_start``: how long a new replica takes to serve. The operator knows it (the model's
    load time), and domain randomisation varies it, so a policy can learn to plan further ahead when it is long.
    Off keeps the layout that bundles trained without it expect."""
    reference_cold_start_s: float = 300.0
    """Cold start that maps to 1.0 in ``cluster/cold_start`` (seconds)."""
    budget_features: bool = False
    """Append ``tenant<i>/miss_budget_left`` per slot and ``cluster/time_left`` (``BUDGET_FEATURES``): the SLO is
    judged over the episode, so what a policy may risk now depends on what it has spent. Off keeps the layout that
    bundles trained without it expect; ``configs/train.yaml`` turns it on for new runs."""

    def __post_init__(self) -> None:
        check_types(self, "env.observation")
        require(1 <= self.max_tenants <= 64, "env.observation.max_tenants", self.max_tenants, "use 1..64")
        require(self.time_period_s > 0, "env.observation.time_period_s", self.time_period_s, "use > 0 s")
        require(self.trend_halflife_intervals > 0, "env.observation.trend_halflife_intervals",
                self.trend_halflife_intervals, "use > 0")
        require(self.reference_usd_per_hour > 0, "env.observation.reference_usd_per_hour",
                self.reference_usd_per_hour, "use > 0")
        require(self.reference_cold_start_s > 0, "env.observation.reference_cold_start_s",
                self.reference_cold_start_s, "use > 0 s")


def feature_names(config: ObservationConfig) -> list[str]:
    """Every feature's name, in order: ``tenant<i>/<f>``, ``pool/<role>/<f>``, ``cluster/<f>``."""
    names = [f"tenant{i}/{f}" for i in range(config.max_tenants) for f in TENANT_FEATURES]
    names += [f"pool/{role}/{f}" for role in POOL_ROLES for f in POOL_FEATURES]
    names += [f"cluster/{f}" for f in CLUSTER_FEATURES]
    names += [f"cluster/{f}" for f in OPTIONAL_CLUSTER_FEATURES] if config.cold_start_feature else []
    if config.budget_features:
        names += [f"tenant{i}/{BUDGET_TENANT_FEATURE}" for i in range(config.max_tenants)] + ["cluster/time_left"]
    return names


class ObservationBuilder:
    """Builds observations; keeps the little state it needs (moving averages, last known values).

    Args:
        config: observation settings.
        tenants: the scenario's tenants (SLOs and targets), at most ``config.max_tenants``.
        cluster: the cluster (pool bounds and knobs, for scaling).
        budget_levels: number of token-budget levels; cap_levels: number of batch-cap levels.
        period_s: the SLO period of the budget features (seconds): the environment's episode horizon; a controller
            passes the scenario's duration and the budget restarts every period.
    """

    def __init__(self, config: ObservationConfig, tenants: Sequence[TenantSpec], cluster: ClusterConfig,
                 budget_levels: int, cap_levels: int, period_s: float = 7200.0) -> None:
        require(len(tenants) <= config.max_tenants, "env.observation.max_tenants", config.max_tenants,
                f"the scenario has {len(tenants)} tenants: raise max_tenants")
        require(period_s > 0, "env.horizon_s", period_s, "use a positive SLO period (seconds)")
        self.config, self.tenants, self.cluster, self.period_s = config, list(tenants), cluster, period_s
        self.budget_levels, self.cap_levels = budget_levels, cap_levels
        self.names = feature_names(config)
        self.reset()

    @property
    def size(self) -> int:
        """Length of the observation vector."""
        return len(self.names)

    def reset(self) -> None:
        """Forget the previous episode."""
        self._rate_average: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._elapsed_s = 0.0
        self._judged: dict[str, tuple[float, float]] = {}
        """Met and missed requests of each tenant so far in the SLO period."""

    def build(self, snapshot: MetricsSnapshot, knob_levels: tuple[int, int]) -> np.ndarray:
        """The observation for the interval ``snapshot`` reports."""
        serving = sum(p.replicas_ready for role, p in snapshot.pools.items() if role != "decode") or 1
        everyone = sum(p.replicas_ready for p in snapshot.pools.values()) or 1
        values: list[float] = []
        for slot in range(self.config.max_tenants):
            if slot < len(self.tenants):
                values += self._tenant(self.tenants[slot], snapshot, serving, everyone)
            else:
                values += [0.0] * len(TENANT_FEATURES)
        for role in POOL_ROLES:
            values += self._pool(role, snapshot)
        values += self._cluster(snapshot, knob_levels)
        if self.config.budget_features:
            values += self._budget(snapshot)
        vector = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=CLIP, neginf=-CLIP)
        return np.clip(vector, -CLIP, CLIP)

    def _remember(self, key: str, value: float, default: float) -> float:
        if math.isfinite(value):
            self._last[key] = value
            return value
        return self._last.get(key, default)

    def _tenant(self, spec: TenantSpec, snapshot: MetricsSnapshot, serving: int, everyone: int) -> list[float]:
        metrics = snapshot.tenants.get(spec.name)
        if metrics is None:
            return [0.0] * len(TENANT_FEATURES)
        interval = max(snapshot.interval_s, 1e-9)
        rate = metrics.counters[GW_ARRIVED] / interval if snapshot.interval_s > 0 else 0.0
        trend = self._trend(spec.name, rate)
        finished = metrics.counters[GW_FINISHED]
        key, h = spec.name, metrics.histograms
        per_request = 1.0 / finished if finished else math.nan
        prompt = self._remember(f"{key}/prompt", metrics.counters[GW_PROMPT_TOKENS] * per_request, 0.0)
        output = self._remember(f"{key}/output", metrics.counters[GW_GENERATION_TOKENS] * per_request, 0.0)
        attainment = self._remember(f"{key}/attainment", metrics.attainment(), 1.0)
        return [
            1.0, rate / 10.0, rate / serving, prompt / 1000.0, output / 100.0,
            self._remember(f"{key}/ttft50", h[GW_TTFT].quantile(0.5) / spec.ttft_slo_s, 0.0),
            self._remember(f"{key}/ttft90", h[GW_TTFT].quantile(0.9) / spec.ttft_slo_s, 0.0),
            self._remember(f"{key}/tpot50", h[GW_TPOT].quantile(0.5) / spec.tpot_slo_s, 0.0),
            self._remember(f"{key}/tpot90", h[GW_TPOT].quantile(0.9) / spec.tpot_slo_s, 0.0),
            attainment, spec.attainment_target - attainment, trend, metrics.in_flight / everyone / 10.0,
        ]

    def _trend(self, name: str, rate: float) -> float:
        average = self._rate_average.get(name)
        decay = 0.5 ** (1.0 / self.config.trend_halflife_intervals)
        self._rate_average[name] = rate if average is None else decay * average + (1 - decay) * rate
        if average is None or average <= 1e-6:
            return 0.0
        return (rate - average) / average

    def _pool(self, role: str, snapshot: MetricsSnapshot) -> list[float]:
        pool = snapshot.pools.get(role)
        if pool is None:
            return [0.0] * len(POOL_FEATURES)
        bound = max(getattr(self.cluster, role).max_replicas, 1)
        serving = max(pool.replicas_ready + pool.replicas_draining, 1)
        interval = max(snapshot.interval_s, 1e-9)
        return [
            1.0, pool.replicas_ready / bound, pool.replicas_starting / bound, pool.replicas_draining / bound,
            pool.gauges[WAITING] / serving / 10.0,
            pool.gauges[RUNNING] / serving / max(pool.max_num_seqs, 1),
            pool.gauges[KV_USAGE],
            pool.counters[PROMPT_TOKENS] / interval / serving / 1e4 if snapshot.interval_s > 0 else 0.0,
            pool.counters[PREEMPTIONS] / serving / 10.0,
        ]

    def _cluster(self, snapshot: MetricsSnapshot, knob_levels: tuple[int, int]) -> list[float]:
        interval = snapshot.interval_s
        spend = snapshot.cost_usd / interval * 3600.0 if interval > 0 else 0.0
        phase = 2.0 * math.pi * snapshot.end_s / self.config.time_period_s
        time_on = 1.0 if self.config.time_features else 0.0
        values = [
            knob_levels[0] / max(self.budget_levels - 1, 1), knob_levels[1] / max(self.cap_levels - 1, 1),
            snapshot.gpus_billed() / self.cluster.gpu_budget, spend / self.config.reference_usd_per_hour,
            time_on * math.sin(phase), time_on * math.cos(phase),
        ]
        if self.config.cold_start_feature:
            values.append(self.cluster.cold_start_s / self.config.reference_cold_start_s)
        return values

    def _budget(self, snapshot: MetricsSnapshot) -> list[float]:
        """Each slot's miss budget left and the period's time left, from the counts since the period began."""
        if self._elapsed_s >= self.period_s - 1e-9:  # a controller's next SLO period
            self._elapsed_s, self._judged = 0.0, {}
        self._elapsed_s += max(snapshot.interval_s, 0.0)
        budgets = [0.0] * self.config.max_tenants
        for slot, spec in enumerate(self.tenants):
            metrics = snapshot.tenants.get(spec.name)
            met, missed = self._judged.get(spec.name, (0.0, 0.0))
            if metrics is not None:
                met, missed = met + metrics.counters[GW_MET], missed + metrics.counters[GW_MISSED]
            self._judged[spec.name] = (met, missed)
            budgets[slot] = max(-CLIP, miss_budget_left(met, missed, spec.attainment_target))
        return [*budgets, max(0.0, 1.0 - self._elapsed_s / self.period_s)]
