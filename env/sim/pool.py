"""A pool of replicas of one role: lifecycle (starting → ready → draining → gone), routing and billing."""

from __future__ import annotations

import math
from collections.abc import Callable

from disaggpilot.env.metrics import KV_USAGE, RUNNING, WAITING, PoolMetrics
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.sim.config import ClusterConfig, PoolConfig
from disaggpilot.env.sim.recorder import PoolStats
from disaggpilot.env.sim.replica import Host, Replica


class Pool:
    """Replicas of one role and the pool's knobs.

    Args:
        role: ``prefill``, ``decode`` or ``aggregated``.
        config: the pool's settings (initial replicas, tp, knobs).
        cluster: cluster-wide settings (cold start, routing, scheduling, timeouts).
        perf: performance model of one replica.
        host: the simulator, for events and callbacks.
        on_ready: called with a replica when its cold start ends.
    """

    def __init__(self, role: str, config: PoolConfig, cluster: ClusterConfig, perf: PerfModel, host: Host,
                 on_ready: Callable[[Replica], None]) -> None:
        self.role, self.config, self.cluster, self.perf, self.host = role, config, cluster, perf, host
        self.on_ready = on_ready
        self.stats = PoolStats()
        self.max_num_batched_tokens, self.max_num_seqs = config.max_num_batched_tokens, config.max_num_seqs
        self.ready: list[Replica] = []
        self.starting: list[Replica] = []
        self.draining: list[Replica] = []
        self.gpu_seconds = 0.0  # billed in the current interval
        self.interval_start = 0.0
        self._next_index = 0
        self._round_robin = 0
        for _ in range(config.replicas):
            self._new_replica(0.0, ready=True)

    # ----- lifecycle ----------------------------------------------------------------------------------
    def _new_replica(self, now: float, ready: bool) -> Replica:
        replica = self.host.replica_class(self._next_index, self.role, self.perf, self.stats, self.host,
                          self.max_num_batched_tokens, self.max_num_seqs, self.cluster.scheduling,
                          self.cluster.admission_timeout_s)
        self._next_index += 1
        replica.billed_from = now
        if ready:
            replica.ready_at = now
            self.ready.append(replica)
        else:
            replica.ready_at = now + self.cluster.cold_start_s
            self.starting.append(replica)
            self.host.schedule(replica.ready_at, self._become_ready, replica)
        return replica

    def _become_ready(self, replica: Replica) -> None:
        if replica not in self.starting:
            return  # cancelled while starting
        self.starting.remove(replica)
        self.ready.append(replica)
        self.on_ready(replica)

    def target(self) -> int:
        """Replicas asked for: ready and starting (draining ones are on their way out)."""
        return len(self.ready) + len(self.starting)

    def billed(self) -> int:
        """Replicas costing money now."""
        return len(self.ready) + len(self.starting) + len(self.draining)

    def scale_to(self, replicas: int, now: float) -> None:
        """Add starting replicas, or remove replicas: starting ones first, then the least loaded ready."""
        while self.target() < replicas:
            self._new_replica(now, ready=False)
        while self.target() > replicas and self.starting:
            self._bill(self.starting.pop(), now)
        while self.target() > replicas and self.ready:
            replica = min(self.ready, key=Replica.load)
            self.ready.remove(replica)
            replica.draining = True
            if replica.is_empty():
                self._bill(replica, now)
            else:
                self.draining.append(replica)

    def remove_drained(self, replica: Replica, now: float) -> None:
        """A draining replica finished its last request."""
        if replica in self.draining:
            self.draining.remove(replica)
            self._bill(replica, now)

    def set_knobs(self, max_num_batched_tokens: int | None, max_num_seqs: int | None) -> None:
        """Apply new batch limits to every replica, present and future."""
        if max_num_batched_tokens is not None:
            self.max_num_batched_tokens = max_num_batched_tokens
        if max_num_seqs is not None:
            self.max_num_seqs = max_num_seqs
        for replica in self.ready + self.starting + self.draining:
            replica.set_knobs(self.max_num_batched_tokens, self.max_num_seqs)

    # ----- routing -------------------------------------------------------------------------------------
    def route(self) -> Replica | None:
        """The ready replica a new request should go to, or None when none is ready."""
        ready = self.ready
        if not ready:
            return None
        if self.cluster.routing == "round_robin":
            self._round_robin += 1
            return ready[self._round_robin % len(ready)]
        if self.cluster.routing_staleness_s > 0:
            return min(ready, key=Replica.seen)  # least tokens as of the last scrape
        best, best_load = ready[0], math.inf
        if self.role == "prefill":
            for replica in ready:
                if replica.queued_tokens < best_load:
                    best, best_load = replica, replica.queued_tokens
        else:
            for replica in ready:
                load = replica.queued_tokens + replica.kv_used
                if load < best_load:
                    best, best_load = replica, load
        return best

    # ----- billing and metrics ---------------------------------------------------------------------------
    def _bill(self, replica: Replica, until: float) -> None:
        self.gpu_seconds += max(0.0, until - max(replica.billed_from, self.interval_start)) * self.config.tp

    def close_interval(self, end: float) -> tuple[PoolMetrics, float]:
        """The pool's metrics for the interval ending at ``end`` and its GPU-seconds; start the next."""
        for replica in self.ready + self.starting + self.draining:
            self._bill(replica, end)
            replica.checkpoint(end)
        gpu_seconds, self.gpu_seconds, self.interval_start = self.gpu_seconds, 0.0, end
        metrics = PoolMetrics(role=self.role, replicas_ready=len(self.ready),
                              replicas_starting=len(self.starting), replicas_draining=len(self.draining),
                              max_num_batched_tokens=self.max_num_batched_tokens,
                              max_num_seqs=self.max_num_seqs, gpus_per_replica=self.config.tp)
        serving = self.ready + self.draining
        metrics.gauges = {
            RUNNING: float(sum(r.running_count() for r in serving)),
            WAITING: float(sum(r.waiting() for r in serving)),
            KV_USAGE: _mean([r.kv_used / r.kv_capacity for r in self.ready]),
        }
        self.stats.fill(metrics)
        self.stats.reset()
        return metrics, gpu_seconds


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
