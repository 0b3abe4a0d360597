"""The observation: named features of ``MetricsSnapshot``s, evaluated in the order a list of names gives.

An observation's layout is its list of feature names (``env.features`` computes each name): the list a bundle's
spec stores as ``observation_features``. A bundle observes exactly its list; a new run lists
:func:`feature_names` of its settings, which the opt-in flags (``cold_start_feature``, ``budget_features``) still
extend. A new feature therefore needs no flag of its own: register it in ``env.features``, list it here for new
runs, and bundles that do not list it never compute it. Every feature is finite and clipped to
``[-CLIP, CLIP]``. ``OBSERVATION_VERSION`` changes only when an existing name's meaning does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import ConfigError, check_types, require
from disaggpilot.env.features import CLIP, POOL_ROLES, Frame, Memory, known_names, resolve
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.workload import TenantSpec

__all__ = ["CLIP", "OBSERVATION_VERSION", "POOL_ROLES", "ObservationConfig", "Observer", "feature_names",
           "unknown_features"]

OBSERVATION_VERSION = "v1"
TENANT_LAYOUT = ("present", "arrival_rate", "arrival_rate_per_replica", "prompt_mean", "output_mean",
                 "ttft_p50_slo", "ttft_p90_slo", "tpot_p50_slo", "tpot_p90_slo", "attainment", "attainment_gap",
                 "arrival_trend", "in_flight_per_replica")
"""Every run's features of each tenant slot (``tenant<i>/<f>``), in order."""
POOL_LAYOUT = ("present", "ready", "starting", "draining", "waiting_per_replica", "running_per_replica",
               "kv_usage", "prompt_throughput_per_replica", "preemptions_per_replica")
"""Every run's features of each pool role (``pool/<role>/<f>``), in order."""
CLUSTER_LAYOUT = ("token_budget_level", "batch_cap_level", "gpu_fraction", "spend_rate", "time_of_day_sin",
                  "time_of_day_cos")
"""Every run's cluster features (``cluster/<f>``), in order."""


@dataclass
class ObservationConfig:
    """Shape and scaling of the observation."""

    max_tenants: int = 4
    """Tenant slots; scenarios with fewer tenants leave slots empty (presence 0)."""
    time_features: bool = False
    """Give the time-of-day features (``cluster/time_of_day_sin``, ``_cos``) their values; off they are 0 (every
    layout lists them), which makes the policy time-invariant."""
    time_period_s: float = 86400.0
    """Period of the time-of-day features (seconds)."""
    trend_halflife_intervals: float = 6.0
    """Half-life of the arrival-rate moving average behind ``arrival_trend`` (intervals)."""
    reference_usd_per_hour: float = 100.0
    """Spend rate that maps to 1.0 in ``spend_rate`` (USD per hour)."""
    cold_start_feature: bool = False
    """A new run lists ``cluster/cold_start``: how long a new replica takes to serve. The operator knows it (the
    model's load time), and domain randomisation varies it, so a policy can learn to plan further ahead when it is
    long. Off keeps the layout that bundles trained without it expect."""
    reference_cold_start_s: float = 300.0
    """Cold start that maps to 1.0 in ``cluster/cold_start`` (seconds)."""
    budget_features: bool = False
    """A new run lists ``tenant<i>/miss_budget_left`` per slot and ``cluster/time_left``: the SLO is
    judged over the episode, so what a policy may risk now depends on what it has spent. Off keeps the layout that
    bundles trained without it expect; ``configs/train.yaml`` turns it on for new runs."""
    burst_features: bool = False
    """A new run lists ``tenant<i>/peak_rate_ratio`` per slot: whether a tenant's load has been far above what it
    is now earlier in the SLO period, i.e. a burst has come and gone. A policy can then release capacity held
    against a burst once it has passed, without reading the clock. Off keeps the layout of older bundles."""
    features: list[str] | None = None
    """The feature names to observe, in order (``env.features``): the layout. None (a new run) lists
    :func:`feature_names` of the flags above; a bundle's own list (its spec's ``observation_features``) is set
    here when it runs, so the flags do not matter for it."""

    def __post_init__(self) -> None:
        check_types(self, "env.observation")
        if self.features is not None:
            self.features = list(self.features)
            unknown = unknown_features(self.features)
            if unknown:
                raise ConfigError(f"env.observation.features lists {unknown[0]!r}, which this version does not "
                                  f"compute (it computes {known_names()}): list only those, or use the "
                                  "disaggpilot version that computes it")
            require(len(set(self.features)) == len(self.features), "env.observation.features", self.features,
                    "list each feature once")
        require(1 <= self.max_tenants <= 64, "env.observation.max_tenants", self.max_tenants, "use 1..64")
        require(self.time_period_s > 0, "env.observation.time_period_s", self.time_period_s, "use > 0 s")
        require(self.trend_halflife_intervals > 0, "env.observation.trend_halflife_intervals",
                self.trend_halflife_intervals, "use > 0")
        require(self.reference_usd_per_hour > 0, "env.observation.reference_usd_per_hour",
                self.reference_usd_per_hour, "use > 0")
        require(self.reference_cold_start_s > 0, "env.observation.reference_cold_start_s",
                self.reference_cold_start_s, "use > 0 s")


def feature_names(config: ObservationConfig) -> list[str]:
    """The names ``config`` observes, in order: its ``features`` when set (a bundle's), else what a new run lists:
    ``tenant<i>/<f>``, ``pool/<role>/<f>``, ``cluster/<f>``, then the flags' opt-in features."""
    if config.features is not None:
        return list(config.features)
    names = [f"tenant{i}/{f}" for i in range(config.max_tenants) for f in TENANT_LAYOUT]
    names += [f"pool/{role}/{f}" for role in POOL_ROLES for f in POOL_LAYOUT]
    names += [f"cluster/{f}" for f in CLUSTER_LAYOUT]
    names += ["cluster/cold_start"] if config.cold_start_feature else []
    if config.budget_features:
        names += [f"tenant{i}/miss_budget_left" for i in range(config.max_tenants)] + ["cluster/time_left"]
    names += [f"tenant{i}/peak_rate_ratio" for i in range(config.max_tenants)] if config.burst_features else []
    return names


def unknown_features(names: Sequence[str]) -> list[str]:
    """The names in ``names`` this version does not compute (``env.features``), in order."""
    return [name for name in names if resolve(name) is None]


class Observer:
    """Computes observations by feature name; keeps the little memory they need (moving averages, last values,
    the SLO period's counts). The environment and the controller each build one with
    ``env.cluster_env.interface``.

    Args:
        config: observation settings; ``feature_names(config)`` is the layout.
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
        self.level_counts = (budget_levels, cap_levels)
        self.names = feature_names(config)
        self._computes = [self._resolve(name) for name in self.names]
        self.reset()

    @staticmethod
    def _resolve(name: str) -> Callable[[Frame], float]:
        compute = resolve(name)
        if compute is None:
            raise ConfigError(f"observation feature {name!r} is not one this version computes ({known_names()}): "
                              "use the disaggpilot version that listed it, or retrain")
        return compute

    @property
    def size(self) -> int:
        """Length of the observation vector."""
        return len(self.names)

    def reset(self) -> None:
        """Forget the previous episode."""
        self.memory = Memory()

    def join_period(self, elapsed_s: float, history: Sequence[MetricsSnapshot] = ()) -> None:
        """Start the SLO period's clock ``elapsed_s`` seconds in: a controller that starts while a period is under
        way (``controller.slo_period_start``). ``history`` (oldest first) is the period so far as its tenants'
        gateway counters: it is replayed into what the observer remembers across intervals (each tenant's met
        and missed requests, arrival-rate moving average and the period's peak of it), so the features start
        where an observer running since the period began would stand. A tenant absent from it starts afresh
        (full budget, no trend). Call it before the first :meth:`build`."""
        require(0 <= elapsed_s < self.period_s, "elapsed_s", elapsed_s, f"use 0 <= elapsed_s < {self.period_s} s")
        self.memory = Memory()
        for snapshot in history:
            # An unbounded period: the replay never starts a new one, whatever the history's length.
            frame = Frame(snapshot, (0, 0), self.config, self.tenants, self.cluster, self.level_counts, math.inf,
                          self.memory)
            frame.budgets  # noqa: B018 -- remembering the counts is the point
            for spec in self.tenants:
                metrics = snapshot.tenants.get(spec.name)
                if metrics is not None:
                    frame.peak_ratio(spec, metrics)  # moves the moving average and the peak
        self.memory.elapsed_s = float(elapsed_s)

    def build(self, snapshot: MetricsSnapshot, knob_levels: tuple[int, int]) -> np.ndarray:
        """The observation for the interval ``snapshot`` reports: each listed feature, in order."""
        frame = Frame(snapshot, knob_levels, self.config, self.tenants, self.cluster, self.level_counts,
                      self.period_s, self.memory)
        values = [compute(frame) for compute in self._computes]
        vector = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=CLIP, neginf=-CLIP)
        return np.clip(vector, -CLIP, CLIP)
