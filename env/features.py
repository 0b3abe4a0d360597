"""The observation's features by name: each one a registered function of one interval (a :class:`Frame`).

A feature's name says what it describes: ``tenant<i>/<f>`` (the scenario's i-th tenant), ``pool/<role>/<f>``
and ``cluster/<f>``; ``<f>`` is a key of :data:`TENANT`, :data:`POOL` or :data:`CLUSTER`, whose entries hold
its meaning and its computation. An observer (``env.observation.Observer``) evaluates a list of names in
order, so an observation's layout is just that list: the one a bundle's spec stores. Adding a feature is
registering it here (and listing it in :func:`env.observation.feature_names` for new runs); a bundle that does
not list it never computes it. Change what an existing name computes only together with
``env.observation.OBSERVATION_VERSION``.

Features are scale-free where possible (per replica, relative to the tenant's SLO, fractions of bounds), so a
policy trained on a small cluster can run a large one. A quantity that cannot be measured this interval (no
request finished) keeps its last value (:meth:`Memory.remember`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.metrics import (
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
    PoolMetrics,
    TenantMetrics,
)
from disaggpilot.env.reward import miss_budget_left
from disaggpilot.env.workload import TenantSpec

if TYPE_CHECKING:
    from disaggpilot.env.observation import ObservationConfig

CLIP = 10.0
"""Every feature is clipped to ``[-CLIP, CLIP]``."""
POOL_ROLES = ("prefill", "decode", "aggregated")


class Memory:
    """What an observer keeps between intervals: moving averages, last measured values, the SLO period's counts."""

    def __init__(self) -> None:
        self.rate_average: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.elapsed_s = 0.0
        self.judged: dict[str, tuple[float, float]] = {}
        """Met and missed requests of each tenant so far in the SLO period."""
        self.rate_peak: dict[str, float] = {}
        """Each tenant's highest moving-average arrival rate so far in the SLO period (requests/s)."""

    def remember(self, key: str, value: float, default: float) -> float:
        """``value`` when it is finite (and keep it), else the last finite one under ``key`` (or ``default``)."""
        if math.isfinite(value):
            self.last[key] = value
            return value
        return self.last.get(key, default)


@dataclass
class Frame:
    """One interval as the features see it: the snapshot, what the observer knows, and its memory.

    Values that update the memory (``trend``, ``budgets``) are computed once per frame, whichever features ask.
    """

    snapshot: MetricsSnapshot
    knob_levels: tuple[int, int]
    config: ObservationConfig
    tenants: list[TenantSpec]
    cluster: ClusterConfig
    level_counts: tuple[int, int]
    """Number of token-budget and batch-cap levels."""
    period_s: float
    """The SLO period of the budget features (seconds)."""
    memory: Memory
    _trends: dict[str, float] = field(default_factory=dict)

    @cached_property
    def serving(self) -> int:
        """Ready replicas that compute prompts (every pool but decode), at least 1."""
        return sum(p.replicas_ready for role, p in self.snapshot.pools.items() if role != "decode") or 1

    @cached_property
    def everyone(self) -> int:
        """Ready replicas of all pools, at least 1."""
        return sum(p.replicas_ready for p in self.snapshot.pools.values()) or 1

    def rate(self, metrics: TenantMetrics) -> float:
        """A tenant's arrivals per second in the interval."""
        interval = max(self.snapshot.interval_s, 1e-9)
        return metrics.counters[GW_ARRIVED] / interval if self.snapshot.interval_s > 0 else 0.0

    def per_request(self, spec: TenantSpec, metrics: TenantMetrics, counter: str, key: str) -> float:
        """``counter`` per finished request of the tenant (the last value when none finished)."""
        finished = metrics.counters[GW_FINISHED]
        per_request = 1.0 / finished if finished else math.nan
        return self.memory.remember(f"{spec.name}/{key}", metrics.counters[counter] * per_request, 0.0)

    def attainment(self, spec: TenantSpec, metrics: TenantMetrics) -> float:
        """The tenant's attainment in the interval (the last value when nothing was judged)."""
        return self.memory.remember(f"{spec.name}/attainment", metrics.attainment(), 1.0)

    def trend(self, spec: TenantSpec, metrics: TenantMetrics) -> float:
        """(rate - its moving average) / moving average; moves the average once per frame."""
        if spec.name not in self._trends:
            self._trends[spec.name] = self._update_trend(spec.name, self.rate(metrics))
        return self._trends[spec.name]

    def _update_trend(self, name: str, rate: float) -> float:
        average = self.memory.rate_average.get(name)
        decay = 0.5 ** (1.0 / self.config.trend_halflife_intervals)
        self.memory.rate_average[name] = rate if average is None else decay * average + (1 - decay) * rate
        if average is None or average <= 1e-6:
            return 0.0
        return (rate - average) / average

    @cached_property
    def period_elapsed_s(self) -> float:
        """Seconds of the SLO period this interval closes; the first frame of a controller's next period forgets
        the last period's counts and peaks. Advances the period's clock once per frame, whichever feature asks."""
        memory = self.memory
        if memory.elapsed_s >= self.period_s - 1e-9:  # a controller's next SLO period
            memory.elapsed_s, memory.judged, memory.rate_peak = 0.0, {}, {}
        memory.elapsed_s += max(self.snapshot.interval_s, 0.0)
        return memory.elapsed_s

    @cached_property
    def budgets(self) -> dict[str, float]:
        """Each tenant's miss budget left, from the counts since the SLO period began; restarts every period."""
        memory = self.memory
        self.period_elapsed_s  # noqa: B018 -- the period's clock first: a new period starts its counts afresh
        budgets = {}
        for spec in self.tenants:
            metrics = self.snapshot.tenants.get(spec.name)
            met, missed = memory.judged.get(spec.name, (0.0, 0.0))
            if metrics is not None:
                met, missed = met + metrics.counters[GW_MET], missed + metrics.counters[GW_MISSED]
            memory.judged[spec.name] = (met, missed)
            budgets[spec.name] = max(-CLIP, miss_budget_left(met, missed, spec.attainment_target))
        return budgets

    def peak_ratio(self, spec: TenantSpec, metrics: TenantMetrics) -> float:
        """log2(the SLO period's highest moving-average rate / the moving average now), in [0, CLIP]."""
        self.trend(spec, metrics)  # moves the moving average once per frame
        self.period_elapsed_s  # noqa: B018 -- the period's clock first: a new period starts its peaks afresh
        average = self.memory.rate_average.get(spec.name, 0.0)
        peak = max(self.memory.rate_peak.get(spec.name, 0.0), average)
        self.memory.rate_peak[spec.name] = peak
        if average <= 1e-6:
            return 0.0 if peak <= 1e-6 else CLIP
        return min(CLIP, math.log2(peak / average))


MeasuredCompute = Callable[[Frame, TenantSpec, TenantMetrics], float]
PoolCompute = Callable[[Frame, PoolMetrics, int], float]
ClusterCompute = Callable[[Frame], float]


@dataclass(frozen=True)
class Feature:
    """A registered feature: what it means and how it is computed."""

    doc: str
    compute: Callable[..., float]


TENANT: dict[str, Feature] = {}
"""Per tenant slot (``tenant<i>/<f>``), computed as ``compute(frame, spec, metrics)``; an empty slot is 0."""
POOL: dict[str, Feature] = {}
"""Per pool (``pool/<role>/<f>``), computed as ``compute(frame, pool, max_replicas)``; a missing pool is 0."""
CLUSTER: dict[str, Feature] = {}
"""Of the whole cluster (``cluster/<f>``), computed as ``compute(frame)``."""


def measured(name: str, doc: str) -> Callable[[MeasuredCompute], MeasuredCompute]:
    """Register a tenant feature measured from the tenant's interval: 0 when the snapshot lacks the tenant."""
    def register(compute: MeasuredCompute) -> MeasuredCompute:
        def guarded(frame: Frame, spec: TenantSpec, metrics: TenantMetrics | None) -> float:
            return 0.0 if metrics is None else compute(frame, spec, metrics)
        TENANT[name] = Feature(doc, guarded)
        return compute
    return register


def pool(name: str, doc: str) -> Callable[[PoolCompute], PoolCompute]:
    """Register a pool feature."""
    def register(compute: PoolCompute) -> PoolCompute:
        POOL[name] = Feature(doc, compute)
        return compute
    return register


def cluster(name: str, doc: str) -> Callable[[ClusterCompute], ClusterCompute]:
    """Register a cluster feature."""
    def register(compute: ClusterCompute) -> ClusterCompute:
        CLUSTER[name] = Feature(doc, compute)
        return compute
    return register


NAME = re.compile(r"tenant(?P<slot>0|[1-9][0-9]*)/(?P<tenant>\w+)|pool/(?P<role>\w+)/(?P<pool>\w+)"
                  r"|cluster/(?P<cluster>\w+)")
FeatureValue = Callable[[Frame], float]


def resolve(name: str) -> FeatureValue | None:
    """The function computing feature ``name`` from a frame, or None when this version does not compute it."""
    match = NAME.fullmatch(name)
    if match is None:
        return None
    if match["tenant"] is not None and match["tenant"] in TENANT:
        return _tenant_value(int(match["slot"]), TENANT[match["tenant"]])
    if match["pool"] is not None and match["role"] in POOL_ROLES and match["pool"] in POOL:
        return _pool_value(match["role"], POOL[match["pool"]])
    if match["cluster"] is not None and match["cluster"] in CLUSTER:
        return CLUSTER[match["cluster"]].compute
    return None


def _tenant_value(slot: int, feature: Feature) -> FeatureValue:
    def value(frame: Frame) -> float:
        if slot >= len(frame.tenants):
            return 0.0
        spec = frame.tenants[slot]
        return feature.compute(frame, spec, frame.snapshot.tenants.get(spec.name))
    return value


def _pool_value(role: str, feature: Feature) -> FeatureValue:
    def value(frame: Frame) -> float:
        metrics = frame.snapshot.pools.get(role)
        if metrics is None:
            return 0.0
        return feature.compute(frame, metrics, max(getattr(frame.cluster, role).max_replicas, 1))
    return value


def known_names() -> str:
    """The names this version computes, as patterns, for error messages."""
    return (f"tenant<i>/{{{','.join(TENANT)}}}, pool/{{{','.join(POOL_ROLES)}}}/{{{','.join(POOL)}}}, "
            f"cluster/{{{','.join(CLUSTER)}}}")



# ----- tenant features ---------------------------------------------------------------------------------------
TENANT["present"] = Feature("1 when the slot holds a tenant the snapshot reports, else 0 (and every measured "
                            "feature of the slot is 0)",
                            lambda frame, spec, metrics: 0.0 if metrics is None else 1.0)


@measured("arrival_rate", "arrivals in the interval, requests per second / 10")
def _arrival_rate(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.rate(metrics) / 10.0


@measured("arrival_rate_per_replica", "arrivals per second per ready prompt-serving replica")
def _arrival_rate_per_replica(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.rate(metrics) / frame.serving


@measured("prompt_mean", "mean prompt of requests finished in the interval, tokens / 1000")
def _prompt_mean(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.per_request(spec, metrics, GW_PROMPT_TOKENS, "prompt") / 1000.0


@measured("output_mean", "mean output of requests finished in the interval, tokens / 100")
def _output_mean(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.per_request(spec, metrics, GW_GENERATION_TOKENS, "output") / 100.0


def _latency(name: str, histogram: str, quantile: float, doc: str) -> None:
    """Register a latency quantile relative to the tenant's objective for that latency (TTFT or TPOT)."""
    @measured(name, doc)
    def compute(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
        objective = spec.ttft_slo_s if histogram == GW_TTFT else spec.tpot_slo_s
        value = metrics.histograms[histogram].quantile(quantile) / objective
        key = f"{'ttft' if histogram == GW_TTFT else 'tpot'}{int(quantile * 100)}"
        return frame.memory.remember(f"{spec.name}/{key}", value, 0.0)


_latency("ttft_p50_slo", GW_TTFT, 0.5, "p50 time to first token / the tenant's TTFT objective")
_latency("ttft_p90_slo", GW_TTFT, 0.9, "p90 time to first token / the tenant's TTFT objective")
_latency("tpot_p50_slo", GW_TPOT, 0.5, "p50 time per output token / the tenant's TPOT objective")
_latency("tpot_p90_slo", GW_TPOT, 0.9, "p90 time per output token / the tenant's TPOT objective")


@measured("attainment", "fraction of judged requests meeting the SLO in the interval")
def _attainment(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.attainment(spec, metrics)


@measured("attainment_gap", "target - attainment (positive when the tenant is below target)")
def _attainment_gap(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return spec.attainment_target - frame.attainment(spec, metrics)


@measured("arrival_trend", "(rate - its moving average) / moving average: the load's direction")
def _arrival_trend(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.trend(spec, metrics)


@measured("in_flight_per_replica", "requests in the system per ready replica of all pools / 10")
def _in_flight_per_replica(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return metrics.in_flight / frame.everyone / 10.0


TENANT["miss_budget_left"] = Feature(
    "fraction of the misses the tenant's target allows for the requests judged so far in the SLO period still "
    "unspent (1: none missed, 0: at target, < 0: below it); 0 in an empty slot",
    lambda frame, spec, metrics: frame.budgets[spec.name])


@measured("peak_rate_ratio", "log2 of the tenant's highest moving-average arrival rate so far in the SLO period "
          "over that average now: about 0 before a burst and during it, log2(the burst's factor) after it")
def _peak_rate_ratio(frame: Frame, spec: TenantSpec, metrics: TenantMetrics) -> float:
    return frame.peak_ratio(spec, metrics)


# ----- pool features -----------------------------------------------------------------------------------------
def _serving(metrics: PoolMetrics) -> int:
    """Replicas serving requests: ready or draining, at least 1."""
    return max(metrics.replicas_ready + metrics.replicas_draining, 1)


POOL.update({
    "present": Feature("1 when the cluster has this pool", lambda frame, metrics, bound: 1.0),
    "ready": Feature("ready replicas / the pool's max_replicas",
                     lambda frame, metrics, bound: metrics.replicas_ready / bound),
    "starting": Feature("replicas in cold start / max_replicas",
                        lambda frame, metrics, bound: metrics.replicas_starting / bound),
    "draining": Feature("draining replicas / max_replicas",
                        lambda frame, metrics, bound: metrics.replicas_draining / bound),
    "waiting_per_replica": Feature("queued requests per serving replica / 10",
                                   lambda frame, metrics, bound: metrics.gauges[WAITING] / _serving(metrics) / 10.0),
    "running_per_replica": Feature(
        "running requests per serving replica / max_num_seqs",
        lambda frame, metrics, bound: metrics.gauges[RUNNING] / _serving(metrics) / max(metrics.max_num_seqs, 1)),
    "kv_usage": Feature("mean KV-cache usage of ready replicas, 0..1",
                        lambda frame, metrics, bound: metrics.gauges[KV_USAGE]),
})


@pool("prompt_throughput_per_replica", "prompt tokens computed per second per serving replica / 10000")
def _prompt_throughput(frame: Frame, metrics: PoolMetrics, bound: int) -> float:
    if frame.snapshot.interval_s <= 0:
        return 0.0
    return metrics.counters[PROMPT_TOKENS] / max(frame.snapshot.interval_s, 1e-9) / _serving(metrics) / 1e4


@pool("preemptions_per_replica", "preemptions per serving replica in the interval / 10")
def _preemptions(frame: Frame, metrics: PoolMetrics, bound: int) -> float:
    return metrics.counters[PREEMPTIONS] / _serving(metrics) / 10.0


# ----- cluster features --------------------------------------------------------------------------------------
@cluster("token_budget_level", "prefill token-budget level index / (levels - 1)")
def _token_budget_level(frame: Frame) -> float:
    return frame.knob_levels[0] / max(frame.level_counts[0] - 1, 1)


@cluster("batch_cap_level", "decode batch-cap level index / (levels - 1)")
def _batch_cap_level(frame: Frame) -> float:
    return frame.knob_levels[1] / max(frame.level_counts[1] - 1, 1)


@cluster("gpu_fraction", "GPUs billed / GPU budget")
def _gpu_fraction(frame: Frame) -> float:
    return frame.snapshot.gpus_billed() / frame.cluster.gpu_budget


@cluster("spend_rate", "spend in the interval, USD per hour / reference_usd_per_hour")
def _spend_rate(frame: Frame) -> float:
    interval = frame.snapshot.interval_s
    spend = frame.snapshot.cost_usd / interval * 3600.0 if interval > 0 else 0.0
    return spend / frame.config.reference_usd_per_hour


def _time_of_day(frame: Frame, wave: Callable[[float], float]) -> float:
    """``wave`` of the time of day's phase; 0 unless ``time_features`` is on (then the policy is time-invariant)."""
    phase = 2.0 * math.pi * frame.snapshot.end_s / frame.config.time_period_s
    return (1.0 if frame.config.time_features else 0.0) * wave(phase)


CLUSTER.update({
    "time_of_day_sin": Feature("sin(2 pi t / period) (0 when time features are off)",
                               lambda frame: _time_of_day(frame, math.sin)),
    "time_of_day_cos": Feature("cos(2 pi t / period) (0 when time features are off)",
                               lambda frame: _time_of_day(frame, math.cos)),
    "cold_start": Feature("a new replica's cold start (the cluster's cold_start_s) / reference_cold_start_s",
                          lambda frame: frame.cluster.cold_start_s / frame.config.reference_cold_start_s),
})


@cluster("time_left", "fraction of the SLO period (the episode) still to run, 1..0")
def _time_left(frame: Frame) -> float:
    return max(0.0, 1.0 - frame.period_elapsed_s / frame.period_s)
