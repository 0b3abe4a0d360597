"""Prefix caching per replica, as vLLM's automatic prefix caching does it, and prefix-aware routing.

A prompt is a chain of KV blocks. vLLM hashes each full block of ``BLOCK_TOKENS`` tokens together with
its parent's hash, so a block's key stands for the whole prefix up to it and a hit is the longest run of
leading blocks found in the cache (docs.vllm.ai, "Automatic Prefix Caching", design/v1/prefix_caching).
Only full blocks are cached, and the last prompt token is always recomputed: its logits sample the first
output token (vLLM v1 ``KVCacheManager.get_computed_blocks`` caps a hit at ``num_tokens - 1``).

Chains come from the trace's optional ``hash_ids`` column (one id per ``hash_block_tokens`` tokens, the
layout of Mooncake's public traces, whose ids cover 512 tokens each: kvcache-ai/Mooncake
``mooncake_trace.jsonl``, documented in ai-dynamo/dynamo ``benchmarks/data_generator/README.md``), or
from a tenant's ``shared_prefix_tokens`` (a system prompt every request of the tenant starts with).

Each prompt-computing replica keeps an LRU cache of blocks, sized from the KV memory that running requests
leave free: cached blocks are evictable, blocks in use are not. A cached block still in use is counted
in both (conservative: the cache gets less room than vLLM would give it).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, cast

from disaggpilot.env.sim.replica import Host, Replica

if TYPE_CHECKING:
    from disaggpilot.env.sim.pool import Pool
    from disaggpilot.env.sim.request import Request
    from disaggpilot.env.workload import RequestBatch, TenantSpec

BLOCK_TOKENS = 16
"""vLLM's KV block size on GPUs (``CacheConfig.DEFAULT_BLOCK_SIZE = 16``, docs.vllm.ai
api/vllm/config/cache); a prefix is cached and hit in whole blocks (tokens)."""

Chain = tuple[tuple[Hashable, int], ...]
"""A prompt's cacheable blocks from its start: (key, tokens) pairs; a key stands for its whole prefix."""


class PrefixCache:
    """One replica's LRU cache of prompt blocks; ``tokens`` is what it holds (tokens)."""

    __slots__ = ("blocks", "tokens")

    def __init__(self) -> None:
        self.blocks: OrderedDict[Hashable, int] = OrderedDict()
        """Cached blocks, least recently used first: key -> tokens."""
        self.tokens = 0

    def cached_prefix(self, chain: Chain, prompt: int) -> int:
        """Tokens of ``chain``'s leading blocks held here, capped as vLLM caps a hit; touches nothing."""
        blocks, hit = self.blocks, 0
        for key, tokens in chain:
            if key not in blocks:
                break
            hit += tokens
        return min(hit, (prompt - 1) // BLOCK_TOKENS * BLOCK_TOKENS)

    def lookup(self, chain: Chain, prompt: int, room: int) -> int:
        """A request is admitted: evict down to ``room`` tokens, then return its hit and mark it recent."""
        self.trim(room)
        hit = self.cached_prefix(chain, prompt)
        self._touch(chain, hit)
        return hit

    def insert(self, chain: Chain, room: int) -> None:
        """A prompt was computed: cache its blocks (the tail least recent), then evict down to ``room``."""
        blocks = self.blocks
        # vLLM frees a request's blocks tail first, so its tail is evicted before the shared head
        # (design/v1/prefix_caching, "free blocks in reverse order").
        for key, tokens in reversed(chain):
            if key in blocks:
                blocks.move_to_end(key)
            else:
                blocks[key] = tokens
                self.tokens += tokens
        self.trim(room)

    def trim(self, room: int) -> None:
        """Evict least recently used blocks until the cache holds at most ``room`` tokens."""
        blocks = self.blocks
        while self.tokens > room and blocks:
            self.tokens -= blocks.popitem(last=False)[1]

    def _touch(self, chain: Chain, hit: int) -> None:
        blocks, covered, touched = self.blocks, 0, []
        for key, tokens in chain:
            if covered >= hit:
                break
            touched.append(key)
            covered += tokens
        for key in reversed(touched):
            blocks.move_to_end(key)


class PrefixSource:
    """Builds each request's block chain from the trace's hash ids or its tenant's shared prefix.

    Args:
        shared_tokens: per tenant index, the shared prefix every prompt starts with (tokens).
        groups: per tenant index, how many distinct shared prefixes it has; a request draws one.
        hash_block_tokens: per tenant index, the tokens one trace hash id covers (tokens).
        hash_ids: per request (by index in the batch), its trace hash ids, or None.
    """

    def __init__(self, shared_tokens: Sequence[int], groups: Sequence[int], hash_block_tokens: Sequence[int],
                 hash_ids: Sequence[tuple[int, ...] | None] | None) -> None:
        self.shared_blocks = [tokens // BLOCK_TOKENS for tokens in shared_tokens]
        self.groups = list(groups)
        self.hash_block_tokens = list(hash_block_tokens)
        self.hash_ids = hash_ids
        self._shared: dict[tuple[int, int], Chain] = {}

    @classmethod
    def build(cls, tenants: Sequence[TenantSpec], batch: RequestBatch) -> PrefixSource | None:
        """The source for ``batch``, or None when no request can share a prefix (nothing to model)."""
        shared = [tenant.shared_prefix_tokens for tenant in tenants]
        if not any(shared) and batch.hash_ids is None:
            return None
        units = [tenant.trace.hash_block_tokens if tenant.trace is not None else BLOCK_TOKENS for tenant in tenants]
        return cls(shared, [tenant.shared_prefix_groups for tenant in tenants], units, batch.hash_ids)

    def blocks_of(self, request: Request) -> Chain:
        """``request``'s chain, built on first use and kept on the request."""
        blocks: Chain | None = getattr(request, "blocks", None)
        if blocks is None:
            blocks = request.blocks = self.chain(request.rid, request.tenant, request.prompt)
        return blocks

    def chain(self, index: int, tenant: int, prompt: int) -> Chain:
        """The cacheable blocks of request ``index`` (of ``tenant``, ``prompt`` tokens long)."""
        ids = self.hash_ids[index] if self.hash_ids is not None else None
        if ids is not None:
            unit = self.hash_block_tokens[tenant]
            return tuple(((tenant, "hash", key), unit) for key in ids[:prompt // unit])
        head = self._shared_chain(tenant, index)[:prompt // BLOCK_TOKENS]
        rest = prompt // BLOCK_TOKENS - len(head)
        # The request's own blocks never hit again, so they are one entry: they take room, and go together.
        return (*head, ((index, "own"), rest * BLOCK_TOKENS)) if rest > 0 else head

    def _shared_chain(self, tenant: int, index: int) -> Chain:
        """The whole shared prefix request ``index`` starts with; built once per (tenant, group)."""
        # Fibonacci hashing of the request index: a uniform, seed-free draw that no other stream consumes.
        group = ((index * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) * self.groups[tenant] >> 64
        chain = self._shared.get((tenant, group))
        if chain is None:
            chain = tuple(((tenant, group, j), BLOCK_TOKENS) for j in range(self.shared_blocks[tenant]))
            self._shared[(tenant, group)] = chain
        return chain


class PrefixHost(Host):
    """A host whose prompts share prefixes."""

    prefix_source: PrefixSource


class CachingReplica(Replica):
    """A replica with a prefix cache: admission skips a prompt's cached prefix, and a computed prompt is cached.

    A subclass, so that a cluster whose prompts share nothing runs the plain ``Replica`` without a check.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix_cache = PrefixCache()
        self.prefix_source = cast(PrefixHost, self.host).prefix_source

    def _build_chunk(self, now: float) -> tuple[int, float]:
        # Admit first what the base's admission loop would (same budget, same checks), each at its cached prefix:
        # the base then computes them with the requests already prefilling, from their offsets, attending to the
        # cached context (env/perf.py charges those attention pairs).
        budget = self.max_num_batched_tokens - self.batch
        for request in self.prefilling:
            budget -= (request.recompute or request.prompt) - request.prefilled
        while budget > 0 and self.does_prefill and len(self.prefill_queue) and self._admit_prefill(now):
            request = self.prefilling[-1]
            self._reuse_prefix(request)
            budget -= request.prompt - request.prefilled
        return super()._build_chunk(now)

    def _reuse_prefix(self, request: Request) -> None:
        """Skip the prompt's cached prefix: vLLM counts those tokens as prompt tokens, but computes none."""
        self.stats.prefix_queries += request.prompt
        blocks = self.prefix_source.blocks_of(request)
        hit = self.prefix_cache.lookup(blocks, request.prompt, self.kv_capacity - self.kv_used) if blocks else 0
        request.prefilled = hit
        self.queued_tokens -= hit
        self.stats.prompt_tokens += hit
        self.stats.prefix_hits += hit

    def _prompt_computed(self, request: Request, now: float) -> None:
        self.prefix_cache.insert(request.blocks, self.kv_capacity - self.kv_used)
        super()._prompt_computed(request, now)


def route_by_prefix(pools: Sequence[Pool], request: Request, source: PrefixSource) -> Replica | None:
    """The ready prompt replica where ``request`` costs least: outstanding tokens plus its uncached prompt.

    The cost is Dynamo's KV router's with an overlap weight of 1 (docs.nvidia.com/dynamo, "Router Design":
    new prefill tokens = input tokens - overlap blocks x block size, plus the worker's active load), so the
    longest cached prefix wins unless its replica is busier by more than the tokens it would save; ties go to
    the first replica. llm-d's inference scheduler scores replicas the same two ways (prefix-cache and load
    scorers). Returns None when no prompt pool has a ready replica.
    """
    best, best_cost = None, math.inf
    chain, prompt = source.blocks_of(request), request.prompt
    for pool in pools:
        for replica in pool.ready:
            hit = cast(CachingReplica, replica).prefix_cache.cached_prefix(chain, prompt) if chain else 0
            cost = replica.load() + prompt - hit
            if cost < best_cost:
                best, best_cost = replica, cost
    return best

