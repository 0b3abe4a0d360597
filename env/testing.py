"""A test backend that emits hand-built snapshots, so observation, reward and controllers are tested exactly.

``ScriptedBackend`` implements ``ClusterBackend`` like the simulator and a live cluster do, but its snapshots
come from a script: a list of ``SnapshotSpec``s (or a function of the step number), and it records every
action applied. ``make_snapshot`` builds a ``MetricsSnapshot`` from a few plain numbers with the real metric
names and bucket edges. It is shipped in the package (as stable-baselines3 ships its identity envs) so the
agent and controller test suites use it too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.metrics import (
    GW_ARRIVED,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_GOODPUT_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_MET,
    GW_MISSED,
    GW_PROMPT_TOKENS,
    GW_TPOT,
    GW_TTFT,
    KV_USAGE,
    RUNNING,
    WAITING,
    MetricsSnapshot,
    PoolMetrics,
    TenantMetrics,
)


@dataclass
class TenantSpecimen:
    """One tenant's interval in plain numbers (latencies in seconds)."""

    arrived: int = 0
    met: int = 0
    missed: int = 0
    prompt_tokens: int = 1000
    """Per finished request (tokens)."""
    output_tokens: int = 100
    """Per finished request (tokens)."""
    ttft_s: float = 0.5
    """Every finished request's time to first token."""
    tpot_s: float = 0.05
    """Every finished request's time per output token."""
    in_flight: int = 0


@dataclass
class PoolSpecimen:
    """One pool's interval in plain numbers."""

    ready: int = 2
    starting: int = 0
    draining: int = 0
    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0
    tp: int = 4
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256


@dataclass
class SnapshotSpec:
    """A whole interval: tenants, pools and money."""

    tenants: dict[str, TenantSpecimen] = field(default_factory=dict)
    pools: dict[str, PoolSpecimen] = field(default_factory=lambda: {"prefill": PoolSpecimen(),
                                                                     "decode": PoolSpecimen()})
    usd_per_gpu_hour: float = 3.0


def make_snapshot(spec: SnapshotSpec, start_s: float, end_s: float) -> MetricsSnapshot:
    """A contract snapshot from plain numbers; cost is GPUs billed x interval x price."""
    tenants = {name: _tenant(t) for name, t in spec.tenants.items()}
    pools = {role: _pool(role, p) for role, p in spec.pools.items()}
    gpu_seconds = sum(p.replicas_billed * p.gpus_per_replica for p in pools.values()) * (end_s - start_s)
    return MetricsSnapshot(start_s=start_s, end_s=end_s, pools=pools, tenants=tenants,
                           cost_usd=gpu_seconds * spec.usd_per_gpu_hour / 3600.0, gpu_seconds=gpu_seconds,
                           usd_per_gpu_hour=spec.usd_per_gpu_hour, source="test")


def _tenant(t: TenantSpecimen) -> TenantMetrics:
    metrics = TenantMetrics(in_flight=t.in_flight)
    finished = t.met + t.missed
    metrics.counters.update({
        GW_ARRIVED: t.arrived, GW_FINISHED: finished, GW_MET: t.met, GW_MISSED: t.missed,
        GW_PROMPT_TOKENS: finished * t.prompt_tokens, GW_GENERATION_TOKENS: finished * t.output_tokens,
        GW_GOODPUT_PROMPT_TOKENS: t.met * t.prompt_tokens, GW_GOODPUT_GENERATION_TOKENS: t.met * t.output_tokens,
    })
    for _ in range(finished):
        metrics.histograms[GW_TTFT].observe(t.ttft_s)
        metrics.histograms[GW_TPOT].observe(t.tpot_s)
    return metrics


def _pool(role: str, p: PoolSpecimen) -> PoolMetrics:
    metrics = PoolMetrics(role=role, replicas_ready=p.ready, replicas_starting=p.starting,
                          replicas_draining=p.draining, max_num_batched_tokens=p.max_num_batched_tokens,
                          max_num_seqs=p.max_num_seqs, gpus_per_replica=p.tp)
    metrics.gauges = {RUNNING: p.running, WAITING: p.waiting, KV_USAGE: p.kv_usage}
    return metrics


class ScriptedBackend:
    """A ``ClusterBackend`` replaying scripted snapshots and recording the actions it is given.

    Args:
        script: the spec of each interval, in order (the last one repeats), or a function of the
            interval number (0 for ``reset``) returning the spec.
        follow_actions: when True, replica targets applied are reflected in later snapshots (replicas
            become ready at once), so a controller sees its own actions.
        history_before: the intervals before ``reset``, oldest first, that ``period_so_far`` replays (as a live
            cluster's Prometheus keeps them), or the error it raises (a metrics store that is down).
    """

    def __init__(self, script: Sequence[SnapshotSpec] | Callable[[int], SnapshotSpec],
                 follow_actions: bool = True,
                 history_before: Sequence[SnapshotSpec] | Exception | None = None) -> None:
        self.script, self.follow_actions, self.history_before = script, follow_actions, history_before
        self.history_queries: list[tuple[float, float]] = []
        """The (seconds, interval_s) of every ``period_so_far`` call."""
        self.actions: list[ClusterAction] = []
        self.now, self.step, self.closed = 0.0, 0, False
        self.reset_seeds: list[int | None] = []
        self._targets: dict[str, int] = {}

    def _spec(self, index: int) -> SnapshotSpec:
        spec = copy.deepcopy(self.script(index) if callable(self.script)
                             else self.script[min(index, len(self.script) - 1)])
        for role, replicas in self._targets.items():
            if role in spec.pools:
                spec.pools[role].ready, spec.pools[role].starting = replicas, 0
        return spec

    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        """Back to the script's start."""
        self.reset_seeds.append(seed)
        self.now, self.step, self._targets = 0.0, 0, {}
        return make_snapshot(self._spec(0), 0.0, 0.0)

    def apply(self, action: ClusterAction) -> None:
        """Record the action (and follow its replica targets when asked)."""
        self.actions.append(action)
        if self.follow_actions:
            for role, target in action.pools.items():
                if target.replicas is not None:
                    self._targets[role] = target.replicas

    def advance(self, seconds: float) -> MetricsSnapshot:
        """The script's next interval."""
        self.step += 1
        start, self.now = self.now, self.now + seconds
        return make_snapshot(self._spec(self.step), start, self.now)

    def period_so_far(self, seconds: float, interval_s: float) -> list[MetricsSnapshot]:
        """The last ``ceil(seconds / interval_s)`` intervals of ``history_before`` (all when it holds fewer), each
        ``interval_s`` long and the last ending at the reset (time 0); raises ``history_before`` when it is an
        error. Scripted intervals since ``reset`` are not included: the controller asks right after it."""
        self.history_queries.append((seconds, interval_s))
        if isinstance(self.history_before, Exception):
            raise self.history_before
        specs = list(self.history_before or [])
        specs = specs[max(0, len(specs) - math.ceil(seconds / interval_s - 1e-9)):]  # ``[-0:]`` would be all
        return [make_snapshot(spec, -(len(specs) - i) * interval_s, -(len(specs) - i - 1) * interval_s)
                for i, spec in enumerate(specs)]

    def close(self) -> None:
        """Mark closed."""
        self.closed = True

