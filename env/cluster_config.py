"""Settings of a disaggregated cluster (simulated or live): pools, scheduling, routing, lifecycle and prices.

These dataclasses double as Hydra structured-config schemas; each validates itself at construction and
names the bad key, its value and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from disaggpilot.env.errors import require

ROUTING_POLICIES = ("least_tokens", "round_robin", "prefix_aware")
SCHEDULING_POLICIES = ("fcfs", "priority")
KV_LINK_MODELS = ("private", "shared_pair")


@dataclass
class PoolConfig:
    """One pool of identical replicas (prefill, decode or aggregated)."""

    enabled: bool = True
    """Whether the pool exists in this cluster."""
    replicas: int = 4
    """Replicas ready at the start of an episode."""
    tp: int = 4
    """Tensor-parallel degree: GPUs per replica."""
    max_num_batched_tokens: int = 8192
    """Token budget of one iteration (vLLM ``--max-num-batched-tokens``; tokens)."""
    max_num_seqs: int = 256
    """Concurrent sequences per replica (vLLM ``--max-num-seqs``)."""
    min_replicas: int = 1
    """Lowest replica count a controller may ask for."""
    max_replicas: int = 32
    """Highest replica count a controller may ask for."""

    def validate(self, role: str) -> None:
        """Check ranges; ``role`` names the pool in messages."""
        key = f"cluster.{role}"
        require(self.tp >= 1, f"{key}.tp", self.tp, "use >= 1 GPU per replica")
        require(self.max_num_batched_tokens >= 16, f"{key}.max_num_batched_tokens",
                self.max_num_batched_tokens, "use a budget >= 16 tokens")
        require(self.max_num_seqs >= 1, f"{key}.max_num_seqs", self.max_num_seqs, "use >= 1")
        require(0 <= self.min_replicas <= self.max_replicas, f"{key}.min_replicas", self.min_replicas,
                f"use 0..max_replicas={self.max_replicas}")
        require(self.min_replicas <= self.replicas <= self.max_replicas, f"{key}.replicas", self.replicas,
                f"use min_replicas..max_replicas = {self.min_replicas}..{self.max_replicas}")


@dataclass
class ClusterConfig:
    """The serving cluster: disaggregated prefill and decode pools, and an optional aggregated pool."""

    prefill: PoolConfig = field(default_factory=lambda: PoolConfig(replicas=4, max_num_seqs=128))
    """Prefill pool (computes prompts, ships their KV cache to decode)."""
    decode: PoolConfig = field(default_factory=lambda: PoolConfig(replicas=4, max_num_batched_tokens=8192))
    """Decode pool (streams output tokens)."""
    aggregated: PoolConfig = field(
        default_factory=lambda: PoolConfig(enabled=False, replicas=0, min_replicas=0))
    """Colocated pool running chunked prefill and decode together (vLLM without disaggregation)."""
    gpu_budget: int = 128
    """GPUs the cluster may bill at once, over every pool (GPUs)."""
    cold_start_s: float = 60.0
    """Time from asking for a replica to it serving: weights load plus graph capture (seconds)."""
    kv_link_gbps: float | None = None
    """KV-transfer bandwidth per GPU between pools (GB/s); default the GPU type's inter-node figure."""
    kv_transfer_latency_s: float = 0.002
    """Fixed cost of one KV transfer: handshake and descriptor setup (seconds)."""
    kv_link: str = "private"
    """How concurrent KV transfers share bandwidth. ``private``: each gets the whole link (the original
    model). ``shared_pair``: transfers between the same prefill and decode replica share one link fairly,
    so two at once take about twice as long (env/sim/transfer.py says why per replica pair)."""
    kv_reserve_before_transfer: bool = False
    """Whether the decode replica reserves a request's KV blocks before its transfer starts, as vLLM's P/D
    connector does; a decode replica without room then holds the transfer back. False: KV memory is taken
    when the transfer lands (the original model)."""
    routing: str = "least_tokens"
    """``least_tokens`` (fewest outstanding tokens), ``round_robin``, or ``prefix_aware``: prompts go where their
    cached prefix saves the most, net of outstanding tokens (env/sim/prefix.py; least_tokens when prompts share
    nothing); decode stays least_tokens."""
    routing_staleness_s: float = 0.0
    """Age of the load figures the router sees (seconds): it scrapes every replica's outstanding tokens this
    often and routes on the last scrape, as a gateway scraping ``/metrics`` does. 0: perfect, instant state.
    Applies to ``least_tokens``; ``prefix_aware`` routing still sees live state (not modelled stale yet)."""
    routing_counts_sent: bool = False
    """With ``routing_staleness_s`` > 0: whether the router adds the prompt tokens it has sent to a replica
    since the last scrape to that replica's scraped load, as a gateway that proxies every request can. False
    routes on the scrape alone, so every request between two scrapes goes to the same replica."""
    scheduling: str = "fcfs"
    """``fcfs``, or ``priority`` (a tenant's ``priority`` first, FCFS within it) in every replica queue."""
    gpu_memory_utilization: float = 0.9
    """Fraction of HBM vLLM may use (``--gpu-memory-utilization``)."""
    usd_per_gpu_hour: float | None = None
    """Price override (USD per GPU-hour); default the GPU type's."""
    admission_timeout_s: float = 120.0
    """A request still waiting for its prefill this long after arriving is rejected (seconds)."""

    def __post_init__(self) -> None:
        for role in ("prefill", "decode", "aggregated"):
            pool = getattr(self, role)
            if pool.enabled:
                pool.validate(role)
        disaggregated = self.prefill.enabled and self.decode.enabled
        require(disaggregated or self.aggregated.enabled, "cluster", "no pool",
                "enable prefill and decode pools, or the aggregated pool")
        require(self.prefill.enabled == self.decode.enabled, "cluster.prefill.enabled", self.prefill.enabled,
                "prefill and decode pools are enabled together")
        require(self.gpu_budget >= 1, "cluster.gpu_budget", self.gpu_budget, "use >= 1 GPU")
        require(self.initial_gpus() <= self.gpu_budget, "cluster.gpu_budget", self.gpu_budget,
                f"the initial replicas need {self.initial_gpus()} GPUs: raise the budget or lower replicas")
        require(self.cold_start_s >= 0, "cluster.cold_start_s", self.cold_start_s, "use >= 0 seconds")
        require(self.kv_link_gbps is None or self.kv_link_gbps > 0, "cluster.kv_link_gbps",
                self.kv_link_gbps, "use a positive bandwidth in GB/s, or null for the GPU type's")
        require(self.kv_link in KV_LINK_MODELS, "cluster.kv_link", self.kv_link, f"use one of {KV_LINK_MODELS}")
        require(self.routing_staleness_s >= 0, "cluster.routing_staleness_s", self.routing_staleness_s,
                "use >= 0 seconds (0 routes on perfect state)")
        require(self.routing in ROUTING_POLICIES, "cluster.routing", self.routing, f"use one of {ROUTING_POLICIES}")
        require(self.scheduling in SCHEDULING_POLICIES, "cluster.scheduling", self.scheduling,
                f"use one of {SCHEDULING_POLICIES}")
        require(self.admission_timeout_s > 0, "cluster.admission_timeout_s", self.admission_timeout_s, "use > 0")

    def enabled_roles(self) -> tuple[str, ...]:
        """The roles of the enabled pools, in a fixed order."""
        return tuple(r for r in ("prefill", "decode", "aggregated") if getattr(self, r).enabled)

    def initial_gpus(self) -> int:
        """GPUs of the replicas present at the start of an episode."""
        return sum(getattr(self, r).replicas * getattr(self, r).tp for r in self.enabled_roles())
