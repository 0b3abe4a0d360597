"""``SimBackend``: the discrete-event simulator of a multi-tenant disaggregated cluster (docs/architecture.md).

The event loop merges the episode's pre-generated arrivals (sorted arrays) with a heap of engine events.
A gateway in front of the pools admits each request, routes its prompt to a prefill (or aggregated)
replica, ships the KV cache to the least-loaded decode replica, and judges every request against its
tenant's SLO exactly once, as docs/metrics.md defines.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.catalog import GpuSpec, ModelSpec, load_gpu, load_model
from disaggpilot.env.errors import BackendError
from disaggpilot.env.metrics import MetricsSnapshot, judge, tpot_s, waited_past_ttft
from disaggpilot.env.perf_tp import make_perf_model
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.pool import Pool
from disaggpilot.env.sim.prefix import CachingReplica, PrefixSource, route_by_prefix
from disaggpilot.env.sim.recorder import TenantStats
from disaggpilot.env.sim.replica import Replica
from disaggpilot.env.sim.request import Request
from disaggpilot.env.sim.transfer import KvTransfers, Transfer
from disaggpilot.env.workload import RequestBatch, generate_requests


class SimBackend:
    """A simulated cluster behind the ``ClusterBackend`` interface; deterministic per seed.

    Args:
        scenario: model, hardware, tenants and cluster.
        requests: a fixed request list to replay instead of sampling from the tenants per seed.
        gpu: GPU type override (default: the scenario's, from the catalog).
        model: model override (default: the scenario's, from the catalog).
    """

    def __init__(self, scenario: ScenarioConfig, requests: RequestBatch | None = None,
                 gpu: GpuSpec | None = None, model: ModelSpec | None = None) -> None:
        self.scenario = scenario
        self.cluster = scenario.cluster
        self.gpu = gpu or load_gpu(scenario.hardware)
        self.model = model or load_model(scenario.model)
        self.fixed_requests = requests
        self.price = self.cluster.usd_per_gpu_hour if self.cluster.usd_per_gpu_hour is not None \
            else self.gpu.usd_per_gpu_hour
        self.link_gbps = self.cluster.kv_link_gbps or self.gpu.inter_node_gbps
        self.perf = {role: make_perf_model(scenario.perf_model, self.model, self.gpu, getattr(self.cluster, role).tp,
                                           scenario.weight_dtype, scenario.kv_dtype,
                                           self.cluster.gpu_memory_utilization)
                     for role in self.cluster.enabled_roles()}
        # Longer requests could never be served: the model's context, or a KV cache smaller than one sequence.
        self._length_limit = min(self.model.max_context, *(p.kv_capacity_tokens * 0.99 for p in self.perf.values()))
        self.now = 0.0
        self.events: list[tuple[float, int, Any, Any]] = []
        self.sequence: Iterator[int] = itertools.count()
        self._next_arrival = self._count = 0
        self.closed = False
        self._started = False
        self.replica_class: type[Replica] = Replica
        """``CachingReplica`` in episodes whose prompts share prefixes (a tenant's, or a trace's hash ids)."""

    # ----- ClusterBackend --------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        """Start an episode: initial replicas ready, requests sampled from ``seed`` (default 0)."""
        self._check_open()
        batch = self.fixed_requests or generate_requests(self.scenario.tenants, self.scenario.duration_s, seed or 0)
        self.requests = batch
        """The episode's requests (for references that see the future, such as dynamic_oracle; a controller
        never reads them)."""
        self._load_requests(batch)
        self.now, self.interval_start = 0.0, 0.0
        self.events = []
        self.sequence = itertools.count()
        self.pools = {role: Pool(role, getattr(self.cluster, role), self.cluster, self.perf[role], self,
                                 self._replica_ready) for role in self.cluster.enabled_roles()}
        self._prompt_pools = [pool for role, pool in self.pools.items() if role != "decode"]
        if "decode" in self.pools:
            self.transfers = KvTransfers(self.cluster, self, self.perf["decode"].kv_bytes_per_token,
                                         self.link_gbps, self._transfer_done)
        self._route_load = Replica.seen if self.cluster.routing_staleness_s > 0 else Replica.load
        self._count_sent = self.cluster.routing_staleness_s > 0 and self.cluster.routing_counts_sent
        if self.cluster.routing_staleness_s > 0:
            self.schedule(0.0, self._scrape, None)
        self.tenant_stats = [TenantStats() for _ in self.tenant_names]
        self.in_flight: dict[int, Request] = {}
        self.pending_prefill: deque[Request] = deque()
        self.pending_decode: deque[tuple[Request, Replica]] = deque()
        self.totals = {"arrived": 0, "finished": 0, "rejected": 0}
        self._started = True
        return self._snapshot(0.0)

    def apply(self, action: ClusterAction) -> None:
        """Set replica targets and knobs; scale-ups start cold, scale-downs drain (never drop work)."""
        self._check_started()
        for role, target in action.pools.items():
            pool = self.pools.get(role)
            if pool is None:
                raise BackendError(f"action targets pool {role!r}, which this cluster does not have "
                                   f"(enabled: {sorted(self.pools)})")
            pool.set_knobs(target.max_num_batched_tokens, target.max_num_seqs)
            if target.replicas is not None:
                pool.scale_to(self._within_budget(pool, target.replicas), self.now)

    def advance(self, seconds: float) -> MetricsSnapshot:
        """Simulate ``seconds`` more and report the interval."""
        self._check_started()
        if not seconds > 0:
            raise BackendError(f"advance(seconds={seconds!r}): use a positive number of seconds")
        end = self.now + seconds
        self._run_until(end)
        self.now = end
        return self._snapshot(end)

    def close(self) -> None:
        """Release the episode's state."""
        self.closed = True
        self.events = []
        self.in_flight = {}

    # ----- the event loop --------------------------------------------------------------------------------
    def _run_until(self, end: float) -> None:
        events, times, index, count = self.events, self._arrival_times, self._next_arrival, self._count
        heappop = heapq.heappop
        while True:
            next_arrival = times[index] if index < count else math.inf
            # Every engine event before the next arrival (and before ``end``) first, in a tight loop:
            # callbacks only ever add events, never arrivals, so ``bound`` holds throughout.
            bound = next_arrival if next_arrival < end else end
            while events and events[0][0] < bound:
                self.now, _, callback, argument = heappop(events)
                callback(argument)
            if next_arrival >= end:
                break
            self.now = next_arrival
            self._arrive(index)
            index += 1
        self._next_arrival = index

    def schedule(self, time: float, callback: Callable[[Any], None], argument: Any) -> None:
        """Run ``callback(argument)`` at ``time`` (simulated seconds)."""
        heapq.heappush(self.events, (time, next(self.sequence), callback, argument))

    # ----- the gateway -----------------------------------------------------------------------------------
    def _load_requests(self, batch: RequestBatch) -> None:
        self.tenant_names = batch.tenant_names
        specs = {t.name: t for t in self.scenario.tenants}
        self.tenant_specs = [specs[name] for name in batch.tenant_names]
        self._arrival_times = batch.arrival_s.tolist()
        self._tenants = batch.tenant.tolist()
        self._prompts = batch.prompt_tokens.tolist()
        self._outputs = batch.output_tokens.tolist()
        self._count, self._next_arrival = len(batch), 0
        self._priority = [t.priority for t in self.tenant_specs]
        self.prefix_source = PrefixSource.build(self.tenant_specs, batch)
        self.replica_class = Replica if self.prefix_source is None else CachingReplica
        self._prefix_routing = self.prefix_source is not None and self.cluster.routing == "prefix_aware"

    def _arrive(self, index: int) -> None:
        tenant = self._tenants[index]
        request = Request(index, tenant, self.now, self._prompts[index], self._outputs[index], self._priority[tenant])
        self.totals["arrived"] += 1
        self.tenant_stats[tenant].arrived += 1.0
        self.in_flight[index] = request
        if request.prompt + request.output > self._length_limit:
            self.rejected(request, self.now)
            return
        self._dispatch_prompt(request)

    def _scrape(self, _: None) -> None:
        """The gateway's periodic scrape: routing sees these loads until the next one."""
        for pool in self.pools.values():
            for replica in pool.ready:
                replica.seen_load = replica.load()
        self.schedule(self.now + self.cluster.routing_staleness_s, self._scrape, None)

    def _dispatch_prompt(self, request: Request) -> None:
        if self._prefix_routing:
            assert self.prefix_source is not None
            self._submit_prompt(route_by_prefix(self._prompt_pools, request, self.prefix_source), request)
            return
        prompt_pools = self._prompt_pools
        best = prompt_pools[0].route()
        load = self._route_load
        for pool in prompt_pools[1:]:
            candidate = pool.route()
            if candidate is not None and (best is None or load(candidate) < load(best)):
                best = candidate
        if best is None:
            self.pending_prefill.append(request)
        else:
            if self._count_sent:
                best.seen_load += request.prompt
            best.submit_prefill(request, self.now)

    def _submit_prompt(self, replica: Replica | None, request: Request) -> None:
        if replica is None:
            self.pending_prefill.append(request)
        else:
            replica.submit_prefill(request, self.now)

    def prefill_done(self, replica: Replica, request: Request, time: float) -> None:
        """A prefill replica computed a prompt: ship its KV cache to a decode replica."""
        decode = self.pools["decode"].route()
        if decode is None:
            self.pending_decode.append((request, replica))
            return
        if self._count_sent:
            decode.seen_load += request.prompt
        self.transfers.send(request, replica, decode, time)

    def kv_freed(self, replica: Replica, time: float) -> None:
        """A decode replica freed KV memory: start the transfers it held back (kv_reserve_before_transfer)."""
        self.transfers.kv_freed(replica, time)

    def _transfer_done(self, argument: Transfer) -> None:
        request, prefill, decode = argument
        prefill.release_kv(request, self.now)
        decode.submit_decode(request, self.now)

    def _replica_ready(self, replica: Replica) -> None:
        if replica.role == "decode":
            pending, self.pending_decode = self.pending_decode, deque()
            for request, prefill in pending:
                self.prefill_done(prefill, request, self.now)
        else:
            pending_prompts, self.pending_prefill = self.pending_prefill, deque()
            for request in pending_prompts:
                self._dispatch_prompt(request)

    # ----- judging requests (docs/metrics.md) -------------------------------------------------------------------
    def first_token(self, request: Request, time: float) -> None:
        """The client receives the first output token at ``time``."""
        request.first_token = time
        self.tenant_stats[request.tenant].ttft.observe(time - request.arrival)

    def finished(self, request: Request, time: float) -> None:
        """The last output token reached the client."""
        stats, tenant = self.tenant_stats[request.tenant], request.tenant
        del self.in_flight[request.rid]
        self.totals["finished"] += 1
        stats.finished += 1.0
        stats.prompt_tokens += request.prompt
        stats.generation_tokens += request.output
        stats.e2e.observe(time - request.arrival)
        ttft = request.first_token - request.arrival
        tpot = tpot_s(request.first_token, time, request.output)
        if request.output > 1:
            stats.tpot.observe(tpot)
        if request.judged:
            return
        judgement = judge(ttft, tpot, request.prompt, request.output, self.tenant_specs[tenant])
        if judgement.met:
            stats.met += 1.0
            stats.goodput_prompt += judgement.goodput_prompt_tokens
            stats.goodput_generation += judgement.goodput_output_tokens
        else:
            stats.missed += 1.0

    def rejected(self, request: Request, time: float) -> None:
        """The request is turned away (too long for the model, or waited past the admission timeout)."""
        stats = self.tenant_stats[request.tenant]
        del self.in_flight[request.rid]
        self.totals["rejected"] += 1
        stats.rejected += 1.0
        if not request.judged:
            stats.missed += 1.0

    def replica_idle(self, replica: Replica, time: float) -> None:
        """A draining replica has nothing left: it goes away."""
        self.pools[replica.role].remove_drained(replica, time)

    def _judge_late(self, now: float) -> None:
        specs, stats = self.tenant_specs, self.tenant_stats
        for request in self.in_flight.values():
            if not request.judged and math.isnan(request.first_token) and \
                    waited_past_ttft(now - request.arrival, specs[request.tenant]):
                request.judged = True
                stats[request.tenant].missed += 1.0

    def _expire_pending(self, now: float) -> None:
        timeout = self.cluster.admission_timeout_s
        while self.pending_prefill and now - self.pending_prefill[0].arrival > timeout:
            self.rejected(self.pending_prefill.popleft(), now)

    # ----- reporting ---------------------------------------------------------------------------------------
    def _snapshot(self, end: float) -> MetricsSnapshot:
        self._expire_pending(end)
        self._judge_late(end)
        pools, gpu_seconds = {}, 0.0
        for role, pool in self.pools.items():
            pools[role], billed = pool.close_interval(end)
            gpu_seconds += billed
        in_flight = [0] * len(self.tenant_names)
        for request in self.in_flight.values():
            in_flight[request.tenant] += 1
        tenants = {}
        for index, name in enumerate(self.tenant_names):
            tenants[name] = self.tenant_stats[index].to_metrics(in_flight[index])
            self.tenant_stats[index].reset()
        start, self.interval_start = self.interval_start, end
        return MetricsSnapshot(start_s=start, end_s=end, pools=pools, tenants=tenants,
                               cost_usd=gpu_seconds * self.price / 3600.0, gpu_seconds=gpu_seconds,
                               usd_per_gpu_hour=self.price, source="sim")

    def _within_budget(self, pool: Pool, replicas: int) -> int:
        """Cap a scale-up at what the GPU budget allows, counting draining replicas (they still bill)."""
        others = sum(p.billed() * p.config.tp for p in self.pools.values() if p is not pool)
        affordable = (self.cluster.gpu_budget - others) // pool.config.tp - len(pool.draining)
        current = pool.target()
        return replicas if replicas <= current else max(current, min(replicas, affordable))

    def _check_open(self) -> None:
        if self.closed:
            raise BackendError("this SimBackend is closed: build a new one")

    def _check_started(self) -> None:
        self._check_open()
        if not self._started:
            raise BackendError("call reset(seed) before apply() or advance()")
