"""``LiveBackend``: a real cluster behind the ``ClusterBackend`` interface (docs/architecture.md).

It observes through a :class:`~env.live.source.PrometheusSource` and acts through any ``env.backend.Actuator``
(Kubernetes, local processes, a dry run). ``advance(seconds)`` waits until ``seconds`` have passed since the
previous snapshot (not since the call: a caller that already waited, like the controller loop, gets its
snapshot at once), then reads the interval. Time is injected (:class:`EpochClock`), so tests can count the
waits.

What Prometheus cannot say is filled in here, from the actions applied:

- replicas: Prometheus counts targets up (ready) and down (starting: a replica loading its model answers no
  scrape). Once a target is known for a pool, ready replicas beyond it are *draining*, and a shortfall below
  it is *starting* even before the new replica appears as a target;
- knobs (``max_num_batched_tokens``, ``max_num_seqs``): the last applied, else the scenario's;
- money: GPUs billed (starting + ready + draining, times the tensor-parallel degree) over the interval, at the
  configured price. A cloud bill would be more exact; this is what the simulator charges too.

Times may be scaled (``time_scale``, wall seconds per cluster second; 1 on a real cluster): an emulated rig
whose GPUs run 4x faster than real ones is read at 0.25, so ``advance(30)`` waits 7.5 wall seconds, snapshot
times and GPU-seconds are in cluster seconds and every latency histogram is stretched back by 4
(``Histogram.rescaled``). Counts need nothing: a token is a token on either clock.

``reset(seed)`` takes the first snapshot (a zero-length interval: gauges only); the seed is ignored, a live
cluster has no randomness to seed. At start-up every selector must match some target
(:class:`~env.live.errors.SelectorMatchesNothingError` otherwise); afterwards a vanished pool is reported as
missing data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from disaggpilot.env.backend import Actuator, ClusterAction
from disaggpilot.env.catalog import load_gpu
from disaggpilot.env.cluster_config import PoolConfig
from disaggpilot.env.errors import BackendError, require
from disaggpilot.env.live.config import LiveConfig
from disaggpilot.env.live.promql import PrometheusClient
from disaggpilot.env.live.source import PrometheusSource, Reading
from disaggpilot.env.metrics import HISTORY_COUNTERS, JUDGED_COUNTERS, MetricsSnapshot, PoolMetrics, TenantMetrics
from disaggpilot.env.scenario import ScenarioConfig


class EpochClock(Protocol):
    """Wall time for the live backend: Prometheus is queried at Unix times."""

    def now(self) -> float:
        """Unix time (seconds)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (seconds)."""
        ...


class SystemClock:
    """The real clock: ``time.time`` and ``time.sleep``."""

    def now(self) -> float:
        """Unix time (seconds)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (nothing when not positive)."""
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class PoolLayout:
    """What the backend needs to know of a pool that Prometheus does not say.

    Attributes:
        gpus_per_replica: tensor-parallel degree (GPUs per replica).
        max_num_batched_tokens: the prefill token budget in force at start (tokens per iteration).
        max_num_seqs: the batch cap in force at start (sequences per replica).
    """

    gpus_per_replica: int
    max_num_batched_tokens: int
    max_num_seqs: int


class LiveBackend:
    """A live cluster: snapshots from Prometheus, actions through an actuator.

    Args:
        source: reads the metrics contract for an interval.
        actuator: applies targets (raises ``env.errors`` temporary or permanent errors).
        pools: layout per pool role the cluster has.
        usd_per_gpu_hour: price charged for billed GPUs (USD per GPU-hour).
        clock: wall time and waiting (default: the system clock).
        check_targets: at ``reset``, fail when a selector matches no target (turn off only in tests).
        time_scale: wall seconds per cluster second (1 on a real cluster; ``LiveConfig.time_scale``).
    """

    def __init__(self, source: PrometheusSource, actuator: Actuator, pools: Mapping[str, PoolLayout],
                 usd_per_gpu_hour: float, clock: EpochClock | None = None, check_targets: bool = True,
                 time_scale: float = 1.0) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise BackendError(f"time_scale={time_scale!r}: use wall seconds per cluster second, > 0")
        self.source, self.actuator, self.pools = source, actuator, dict(pools)
        self.usd_per_gpu_hour, self.clock = usd_per_gpu_hour, clock or SystemClock()
        self.check_targets, self.time_scale = check_targets, time_scale
        self.last_reading: Reading | None = None
        """The latest reading, with its data issues (for logs and tests)."""
        self.replica_targets: dict[str, int] = {}
        """Replicas asked for per pool by the actions applied so far."""
        self.closed, self._last = False, 0.0
        self._origin: float | None = None
        self._knobs: dict[str, tuple[int, int]] = {}

    # ----- ClusterBackend ----------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        """First scrape (gauges only); ``seed`` is ignored."""
        if self.closed:
            raise BackendError("this LiveBackend is closed: build a new one")
        now = self.clock.now()
        if self.check_targets:
            self.source.check_targets(now)
        self._origin, self._last, self.replica_targets = now, now, {}
        self._knobs = {role: (p.max_num_batched_tokens, p.max_num_seqs) for role, p in self.pools.items()}
        return self._snapshot(now, now)

    def apply(self, action: ClusterAction) -> None:
        """Hand ``action`` to the actuator; its targets count from then on (not if the actuator raises)."""
        self._check_started()
        unknown = sorted(set(action.pools) - set(self.pools))
        if unknown:
            raise BackendError(f"action targets pools {unknown}, which this cluster does not have "
                               f"(it has {sorted(self.pools)})")
        self.actuator.apply(action)
        for role, target in action.pools.items():
            if target.replicas is not None:
                self.replica_targets[role] = target.replicas
            budget, cap = self._knobs[role]
            self._knobs[role] = (target.max_num_batched_tokens or budget, target.max_num_seqs or cap)

    def advance(self, seconds: float) -> MetricsSnapshot:
        """Wait until ``seconds`` (cluster seconds) after the previous snapshot, then read the interval since
        it."""
        self._check_started()
        if not seconds > 0:
            raise BackendError(f"advance(seconds={seconds!r}): use a positive number of seconds")
        self.clock.sleep(self._last + seconds * self.time_scale - self.clock.now())
        start, end = self._last, self.clock.now()
        self._last = end
        return self._snapshot(start, end)

    def period_so_far(self, seconds: float, interval_s: float) -> list[MetricsSnapshot]:
        """The gateway's per-tenant counters (``HISTORY_COUNTERS``) over the last ``seconds`` (cluster seconds) in
        windows of ``interval_s``, from one Prometheus subquery a counter (``increase`` at each step, so a gateway
        restart's counter reset is bridged); times are relative to the first scrape, as every snapshot's are."""
        self._check_started()
        for name, value in (("seconds", seconds), ("interval_s", interval_s)):
            if not (math.isfinite(value) and value > 0):
                raise BackendError(f"period_so_far({name}={value!r}): use a positive number of seconds")
        assert self._origin is not None
        step = interval_s * self.time_scale
        history = self.source.tenant_history(self.clock.now(), seconds * self.time_scale, step)
        snapshots = []
        for end in sorted(history):
            tenants = {name: _counted(values) for name, values in history[end].items()
                       if set(JUDGED_COUNTERS) <= set(values)}
            snapshots.append(MetricsSnapshot(start_s=(end - step - self._origin) / self.time_scale,
                                             end_s=(end - self._origin) / self.time_scale, pools={},
                                             tenants=tenants, source="live"))
        return snapshots

    def close(self) -> None:
        """Mark closed (the actuator and Prometheus belong to the caller)."""
        self.closed = True

    # ----- the snapshot --------------------------------------------------------------------------------------
    def _snapshot(self, start: float, end: float) -> MetricsSnapshot:
        assert self._origin is not None
        self.last_reading = self.source.read(start, end, self._origin)
        snapshot = self.last_reading.snapshot
        if self.time_scale != 1.0:
            to_cluster_time(snapshot, self.time_scale)
        for role, pool in snapshot.pools.items():
            self._complete(role, pool)
        gpu_seconds = snapshot.gpus_billed() * (end - start) / self.time_scale
        snapshot.gpu_seconds, snapshot.usd_per_gpu_hour = gpu_seconds, self.usd_per_gpu_hour
        snapshot.cost_usd = gpu_seconds * self.usd_per_gpu_hour / 3600.0
        return snapshot

    def _complete(self, role: str, pool: PoolMetrics) -> None:
        layout = self.pools.get(role)
        if layout is None:
            return
        pool.gpus_per_replica = layout.gpus_per_replica
        pool.max_num_batched_tokens, pool.max_num_seqs = self._knobs[role]
        target = self.replica_targets.get(role)
        if target is not None:
            up = pool.replicas_ready
            pool.replicas_ready = min(up, target)
            pool.replicas_draining = up - pool.replicas_ready
            # Only the shortfall is starting: a target that is down beyond it has just been stopped (Prometheus
            # keeps scraping it for a few seconds after it leaves service discovery).
            pool.replicas_starting = max(0, target - up)

    def _check_started(self) -> None:
        if self.closed:
            raise BackendError("this LiveBackend is closed: build a new one")
        if self._origin is None:
            raise BackendError("call reset() before apply() or advance()")


def _counted(values: Mapping[str, float]) -> TenantMetrics:
    """A tenant's interval holding only the replayed gateway counters: NaN for those the store lacked, zero for
    those never replayed."""
    metrics = TenantMetrics()
    metrics.counters.update({name: values.get(name, math.nan) for name in HISTORY_COUNTERS})
    return metrics


def to_cluster_time(snapshot: MetricsSnapshot, time_scale: float) -> None:
    """Convert ``snapshot`` in place from wall seconds to cluster seconds (``time_scale`` wall s per cluster s):
    its times and every latency histogram; counters and gauges are counts and need nothing."""
    snapshot.start_s /= time_scale
    snapshot.end_s /= time_scale
    for histograms in [*(p.histograms for p in snapshot.pools.values()),
                       *(t.histograms for t in snapshot.tenants.values())]:
        for name, histogram in histograms.items():
            histograms[name] = histogram.rescaled(1.0 / time_scale)


# ----- building one from a scenario ---------------------------------------------------------------------------
def layout_of(scenario: ScenarioConfig) -> dict[str, PoolLayout]:
    """Each enabled pool's tensor-parallel degree and starting knobs."""
    cluster = scenario.cluster
    pools: dict[str, PoolConfig] = {role: getattr(cluster, role) for role in cluster.enabled_roles()}
    return {role: PoolLayout(p.tp, p.max_num_batched_tokens, p.max_num_seqs) for role, p in pools.items()}


def live_backend_factory(config: LiveConfig, actuator: Actuator, clock: EpochClock | None = None,
                         client: PrometheusClient | None = None) -> Callable[[ScenarioConfig], LiveBackend]:
    """A ``backend_factory`` for ``DisaggClusterEnv`` (and the controller): a :class:`LiveBackend` per scenario.

    Args:
        config: the live settings (``configs/env/live.yaml``).
        actuator: what applies actions to the cluster.
        clock: wall time (default: the system clock).
        client: the Prometheus client (default: ``urllib`` to ``config.prometheus.url``).
    """
    def build(scenario: ScenarioConfig) -> LiveBackend:
        roles = scenario.cluster.enabled_roles()
        require(set(config.prometheus.pools) == set(roles), "live.prometheus.pools", sorted(config.prometheus.pools),
                f"give one selector per pool of scenario {scenario.name!r}: {list(roles)}")
        price = config.usd_per_gpu_hour
        if price is None:
            price = scenario.cluster.usd_per_gpu_hour
        if price is None:
            price = load_gpu(scenario.hardware).usd_per_gpu_hour
        source = PrometheusSource(config.prometheus, client, tenants=[t.name for t in scenario.tenants])
        return LiveBackend(source, actuator, layout_of(scenario), price, clock, time_scale=config.time_scale)

    return build
