"""The feed-forward schedules ``dynamic_oracle`` searches: replica counts sized for an episode's true future demand.

Each control interval ``t`` the schedule asks for

    P_t = max(prefill_floor, ceil(peak prefill demand over [t, t + cold start + interval] / (u_p x prefill rate)))
    D_t = max(decode_floor,  ceil(peak decode demand over the same window / (u_d x decode rate)))

where the demand is the episode's real requests (prompt tokens/s and output tokens/s arriving per interval),
the rates are one replica's profiled token rates (:class:`agent.sizing.profile.PerfProfile`, at the
episode's mean prompt and, for decode, the strictest tenant's TPOT target, as the headroom sizer profiles
them) and ``u_p``, ``u_d`` are utilisations. Looking a cold start ahead orders each replica so that it is
ready when the demand it serves arrives: the ``ahead`` schedule of ``configs/scenario/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from disaggpilot.agent.baselines.common import make_action
from disaggpilot.agent.sizing.profile import PerfProfile
from disaggpilot.agent.sizing.sizer import fit_to_budget
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.workload import RequestBatch


@dataclass(frozen=True)
class FeedForwardParams:
    """One member of the family."""

    prefill_utilization: float
    """Fraction of one prefill replica's profiled token rate planned for (fraction, > 0)."""
    decode_utilization: float
    """Fraction of one decode replica's profiled token rate at the TPOT target planned for (fraction, > 0)."""
    prefill_floor: int
    """Fewest prefill replicas asked for in any interval (replicas)."""
    decode_floor: int
    """Fewest decode replicas asked for in any interval (replicas)."""


@dataclass(frozen=True)
class ScheduleCandidate:
    """Per-interval (prefill, decode) targets with fixed knobs; a :class:`~agent.baselines.oracle_search.Replayable`.

    Attributes:
        targets: (prefill replicas, decode replicas) per control interval.
        budget: prefill token budget (tokens per iteration).
        cap: decode batch cap (sequences per replica).
        params: the family member that produced it (not part of equality: equal targets are one trial).
    """

    targets: tuple[tuple[int, int], ...]
    budget: int
    cap: int
    params: FeedForwardParams | None = field(default=None, compare=False)

    def action_at(self, step: int) -> ClusterAction:
        """The targets of interval ``step``; the last interval's beyond the schedule's end."""
        prefill, decode = self.targets[min(step, len(self.targets) - 1)]
        return make_action({"prefill": prefill, "decode": decode}, self.budget, self.cap)

    def gpu_hours(self, world: ScenarioConfig, interval_s: float) -> float:
        """GPU-hours the targets ask for (GPU-hours; replicas starting or draining are billed on top)."""
        tp_p, tp_d = world.cluster.prefill.tp, world.cluster.decode.tp
        return sum(p * tp_p + d * tp_d for p, d in self.targets) * interval_s / 3600.0


@dataclass(frozen=True)
class Demand:
    """An episode's true demand per control interval.

    Attributes:
        prefill_tokens_per_s: prompt tokens arriving per second, per interval (tokens/s).
        decode_tokens_per_s: output tokens arriving per second, per interval (tokens/s).
    """

    prefill_tokens_per_s: np.ndarray
    decode_tokens_per_s: np.ndarray


def interval_demand(requests: RequestBatch, steps: int, interval_s: float) -> Demand:
    """Prompt and output tokens per second arriving in each of the first ``steps`` intervals of ``interval_s`` s."""
    index = np.floor(requests.arrival_s / interval_s).astype(np.int64)
    mine = index < steps
    def rate(tokens: np.ndarray) -> np.ndarray:
        return np.bincount(index[mine], weights=tokens[mine].astype(np.float64), minlength=steps) / interval_s
    return Demand(rate(requests.prompt_tokens), rate(requests.output_tokens))


def lookahead_peak(values: np.ndarray, intervals: int) -> np.ndarray:
    """Per index ``t``, the largest of ``values[t : t + intervals]`` (the series' end cuts the window short)."""
    padded = np.concatenate([values, np.full(intervals - 1, -np.inf)])
    return np.lib.stride_tricks.sliding_window_view(padded, intervals).max(axis=1)


class FeedForwardFamily:
    """Builds the schedule of any :class:`FeedForwardParams` for one episode.

    Args:
        world: the episode's scenario (after randomisation): cold start, pools, bounds, GPU budget, SLOs.
        requests: the episode's requests.
        steps: control intervals in the episode.
        interval_s: the control interval (seconds).
        budget: prefill token budget every interval (tokens per iteration).
        cap: decode batch cap every interval (sequences per replica).
    """

    def __init__(self, world: ScenarioConfig, requests: RequestBatch, steps: int, interval_s: float, budget: int,
                 cap: int) -> None:
        self.world, self.budget, self.cap = world, budget, cap
        self.demand = interval_demand(requests, steps, interval_s)
        self.ahead_intervals = max(1, math.ceil((world.cluster.cold_start_s + interval_s) / interval_s - 1e-9))
        self.peak_prefill = lookahead_peak(self.demand.prefill_tokens_per_s, self.ahead_intervals)
        self.peak_decode = lookahead_peak(self.demand.decode_tokens_per_s, self.ahead_intervals)
        profile = PerfProfile(world)
        prompt = float(np.mean(requests.prompt_tokens)) if len(requests) else 1.0
        output = float(np.mean(requests.output_tokens)) if len(requests) else 1.0
        tpot = min(tenant.tpot_slo_s for tenant in world.tenants)
        self.prefill_rate = profile.prefill_throughput_per_gpu(prompt) * profile.prefill_gpus
        self.decode_rate = profile.best_decode_throughput_per_gpu(tpot, prompt + output / 2) * profile.decode_gpus

    def schedule(self, params: FeedForwardParams) -> ScheduleCandidate:
        """The targets of ``params`` for every interval, within the pools' bounds and the GPU budget."""
        prefill = np.ceil(self.peak_prefill / (self.prefill_rate * params.prefill_utilization) - 1e-9)
        decode = np.ceil(self.peak_decode / (self.decode_rate * params.decode_utilization) - 1e-9)
        targets = tuple(fit_to_budget(self.world.cluster, max(1, params.prefill_floor, int(p)),
                                      max(1, params.decode_floor, int(d)))
                        for p, d in zip(prefill, decode, strict=True))
        return ScheduleCandidate(targets, self.budget, self.cap, params)
