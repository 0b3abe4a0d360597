"""The vLLM metric families an emulated replica exposes, as data: kind, name, labels, HELP text, buckets.

The set, the HELP texts, the label names and the bucket edges are those of vLLM 0.32's ``/metrics``, read from
the recorded scrapes in ``data/vllm/metrics_*.txt`` (vLLM's own strings, kept verbatim so a scrape of
the emulator and one of vLLM read the same). The families are listed in vLLM's order. The NIXL connector's
families and ``num_requests_kv_fetch_by_stage`` exist only on P/D replicas (``--kv-transfer-config``).
"""

from __future__ import annotations

from dataclasses import dataclass

from disaggpilot.env.metrics import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
ENGINE_LABELS: tuple[str, ...] = ("engine", "model_name")
PD_ONLY_PREFIXES: tuple[str, ...] = ("nixl_", "num_requests_kv_fetch_by_stage")


@dataclass(frozen=True)
class Family:
    """One metric family (``name`` without the ``vllm:`` prefix, and without ``_total`` for counters)."""

    kind: str
    """``counter``, ``gauge`` or ``histogram``."""
    name: str
    """Name after ``vllm:``."""
    labels: tuple[str, ...]
    """Label names, in vLLM's order."""
    help: str
    """HELP text, vLLM's."""

    @property
    def full_name(self) -> str:
        """The name with vLLM's ``vllm:`` prefix."""
        return "vllm:" + self.name

    @property
    def pd_only(self) -> bool:
        """Present only on replicas with a KV connector (prefill and decode roles)."""
        return self.name.startswith(PD_ONLY_PREFIXES)


def _f(kind: str, name: str, labels: tuple[str, ...], help_text: str) -> Family:
    return Family(kind, name, labels, help_text)


FAMILIES: tuple[Family, ...] = (
    _f(HISTOGRAM, 'nixl_xfer_time_seconds', ENGINE_LABELS,
       'Histogram of transfer duration for NIXL KV Cache transfers.'),
    _f(HISTOGRAM, 'nixl_post_time_seconds', ENGINE_LABELS,
       'Histogram of transfer post time for NIXL KV Cache transfers.'),
    _f(HISTOGRAM, 'nixl_bytes_transferred', ENGINE_LABELS,
       'Histogram of bytes transferred per NIXL KV Cache transfers.'),
    _f(HISTOGRAM, 'nixl_num_descriptors', ENGINE_LABELS,
       'Histogram of number of descriptors per NIXL  KV Cache transfers.'),
    _f(COUNTER, 'nixl_num_failed_transfers', ENGINE_LABELS,
       'Number of failed NIXL KV Cache transfers, including handshake and notification failures. NOTE: KV '
       'expiry is tracked separately in vllm:nixl_num_kv_expired_reqs.'),
    _f(COUNTER, 'nixl_num_failed_notifications', ENGINE_LABELS,
       'Number of failed NIXL KV Cache notifications. Retained for compatibility; these failures are also '
       'included in vllm:nixl_num_failed_transfers.'),
    _f(COUNTER, 'nixl_num_kv_expired_reqs', ENGINE_LABELS,
       'Number of requests that had their KV expire. NOTE: This metric is tracked on the P instance.'),
    _f(COUNTER, 'nixl_num_notifications_after_expiry', ENGINE_LABELS,
       'Number of completion notifications for requests that were no longer tracked, usually because their '
       'KV lease expired. The KV blocks may have been reused before the transfer finished. Counted per '
       'notification (one per remote rank), not per request.'),
    _f(COUNTER, 'estimated_flops_per_gpu', ENGINE_LABELS,
       'Estimated number of floating point operations per GPU (for Model Flops Utilization calculations).'),
    _f(COUNTER, 'estimated_read_bytes_per_gpu', ENGINE_LABELS,
       'Estimated number of bytes read from memory per GPU (for Model Flops Utilization calculations).'),
    _f(COUNTER, 'estimated_write_bytes_per_gpu', ENGINE_LABELS,
       'Estimated number of bytes written to memory per GPU (for Model Flops Utilization calculations).'),
    _f(GAUGE, 'num_requests_running', ENGINE_LABELS, 'Number of requests in model execution batches.'),
    _f(GAUGE, 'num_requests_waiting', ENGINE_LABELS, 'Number of requests waiting to be processed.'),
    _f(GAUGE, 'num_requests_waiting_by_reason', (*ENGINE_LABELS, 'reason'),
       "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
       "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of "
       'all reasons equals vllm:num_requests_waiting.'),
    _f(GAUGE, 'num_requests_kv_fetch_by_stage', (*ENGINE_LABELS, 'stage'),
       "Number of waiting requests by async KV load stage. Stage labels: 'waiting_to_start' = needs an async"
       " KV load that has not started; 'in_progress' = load started and not yet reported finished; "
       "'completed_waiting' = load finished, request not running yet."),
    _f(GAUGE, 'engine_sleep_state', (*ENGINE_LABELS, 'sleep_state'),
       'Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; '
       'weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.'),
    _f(GAUGE, 'kv_cache_usage_perc', ENGINE_LABELS, 'KV-cache usage. 1 means 100 percent usage.'),
    _f(COUNTER, 'prefix_cache_queries', ENGINE_LABELS, 'Prefix cache queries, in terms of number of queried tokens.'),
    _f(COUNTER, 'prefix_cache_hits', ENGINE_LABELS, 'Prefix cache hits, in terms of number of cached tokens.'),
    _f(COUNTER, 'external_prefix_cache_queries', ENGINE_LABELS,
       'External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of '
       'queried tokens.'),
    _f(COUNTER, 'external_prefix_cache_hits', ENGINE_LABELS,
       'External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of '
       'cached tokens.'),
    _f(COUNTER, 'mm_cache_queries', ENGINE_LABELS, 'Multi-modal cache queries, in terms of number of queried items.'),
    _f(COUNTER, 'mm_cache_hits', ENGINE_LABELS, 'Multi-modal cache hits, in terms of number of cached items.'),
    _f(COUNTER, 'num_preemptions', ENGINE_LABELS, 'Cumulative number of preemption from the engine.'),
    _f(COUNTER, 'prompt_tokens', ENGINE_LABELS, 'Number of prefill tokens processed.'),
    _f(COUNTER, 'prompt_tokens_by_source', (*ENGINE_LABELS, 'source'), 'Number of prompt tokens by source.'),
    _f(COUNTER, 'prompt_tokens_cached', ENGINE_LABELS, 'Number of cached prompt tokens (local + external).'),
    _f(COUNTER, 'prompt_tokens_cached_by_source', (*ENGINE_LABELS, 'source'),
       'Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to'
       ' DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at '
       'admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.'),
    _f(COUNTER, 'generation_tokens', ENGINE_LABELS, 'Number of generation tokens processed.'),
    _f(COUNTER, 'request_success', (*ENGINE_LABELS, 'finished_reason'), 'Count of successfully processed requests.'),
    _f(COUNTER, 'admission_rejections', ('model_name', 'reason'),
       'Number of admission attempts rejected by a queue limit, by reason.'),
    _f(HISTOGRAM, 'request_prompt_tokens', ENGINE_LABELS, 'Number of prefill tokens processed.'),
    _f(HISTOGRAM, 'request_generation_tokens', ENGINE_LABELS, 'Number of generation tokens processed.'),
    _f(HISTOGRAM, 'iteration_tokens_total', ENGINE_LABELS, 'Histogram of number of tokens per engine_step.'),
    _f(HISTOGRAM, 'request_max_num_generation_tokens', ENGINE_LABELS,
       'Histogram of maximum number of requested generation tokens.'),
    _f(HISTOGRAM, 'request_params_n', ENGINE_LABELS, 'Histogram of the n request parameter.'),
    _f(HISTOGRAM, 'request_params_max_tokens', ENGINE_LABELS, 'Histogram of the max_tokens request parameter.'),
    _f(HISTOGRAM, 'time_to_first_token_seconds', ENGINE_LABELS, 'Histogram of time to first token in seconds.'),
    _f(HISTOGRAM, 'inter_token_latency_seconds', ENGINE_LABELS, 'Histogram of inter-token latency in seconds.'),
    _f(HISTOGRAM, 'request_time_per_output_token_seconds', ENGINE_LABELS,
       'Histogram of time_per_output_token_seconds per request.'),
    _f(HISTOGRAM, 'e2e_request_latency_seconds', ENGINE_LABELS, 'Histogram of e2e request latency in seconds.'),
    _f(HISTOGRAM, 'request_queue_time_seconds', ENGINE_LABELS,
       'Histogram of time spent in WAITING phase for request.'),
    _f(HISTOGRAM, 'request_inference_time_seconds', ENGINE_LABELS,
       'Histogram of time spent in RUNNING phase for request.'),
    _f(HISTOGRAM, 'request_prefill_time_seconds', ENGINE_LABELS,
       'Histogram of time spent in PREFILL phase for request.'),
    _f(HISTOGRAM, 'request_decode_time_seconds', ENGINE_LABELS,
       'Histogram of time spent in DECODE phase for request.'),
    _f(HISTOGRAM, 'request_num_preemptions', ENGINE_LABELS,
       'Histogram of the number of times a request was preempted.'),
    _f(HISTOGRAM, 'request_prefill_kv_computed_tokens', ENGINE_LABELS,
       'Histogram of new KV tokens computed during prefill (excluding cached tokens).'),
)

# ----- bucket edges -----------------------------------------------------------------------------------------
ITERATION_TOKENS_BUCKETS: tuple[float, ...] = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
"""vLLM's edges for tokens per step when CUDA graphs are off (``--enforce-eager``, as recorded)."""
NIXL_XFER_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0)
NIXL_POST_BUCKETS: tuple[float, ...] = (0.001, *NIXL_XFER_BUCKETS)
NIXL_BYTES_BUCKETS: tuple[float, ...] = tuple(float(2048 * 4**k) for k in range(12))
NIXL_DESCRIPTOR_BUCKETS: tuple[float, ...] = (10, 20, 30, 50, 75, 100, 200, 400, 1000, 2000, 4000, 10000, 20000,
                                              50000)
FIXED_BUCKETS: dict[str, tuple[float, ...]] = {
    "nixl_xfer_time_seconds": NIXL_XFER_BUCKETS,
    "nixl_post_time_seconds": NIXL_POST_BUCKETS,
    "nixl_bytes_transferred": NIXL_BYTES_BUCKETS,
    "nixl_num_descriptors": NIXL_DESCRIPTOR_BUCKETS,
    "iteration_tokens_total": ITERATION_TOKENS_BUCKETS,
    "request_params_n": (1, 2, 5, 10, 20),
    "request_num_preemptions": (1, 2, 3, 4, 5, 10, 20),
    "time_to_first_token_seconds": TTFT_BUCKETS,
    "inter_token_latency_seconds": ITL_BUCKETS,
    "request_time_per_output_token_seconds": TPOT_BUCKETS,
    "e2e_request_latency_seconds": REQUEST_LATENCY_BUCKETS,
    "request_queue_time_seconds": REQUEST_LATENCY_BUCKETS,
    "request_inference_time_seconds": REQUEST_LATENCY_BUCKETS,
    "request_prefill_time_seconds": REQUEST_LATENCY_BUCKETS,
    "request_decode_time_seconds": REQUEST_LATENCY_BUCKETS,
}
TOKEN_COUNT_HISTOGRAMS: tuple[str, ...] = (
    "request_prompt_tokens", "request_generation_tokens", "request_max_num_generation_tokens",
    "request_params_max_tokens", "request_prefill_kv_computed_tokens",
)
"""Histograms of token counts, whose edges follow the model length."""


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to ``max_value``: vLLM's edges for token counts (its max model length)."""
    edges: list[float] = []
    magnitude = 1
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * magnitude
            if value > max_value:
                return tuple(edges)
            edges.append(float(value))
        magnitude *= 10


def buckets_for(family: Family, max_model_len: int) -> tuple[float, ...]:
    """The bucket edges vLLM gives histogram ``family`` for a model of ``max_model_len`` tokens."""
    if family.name in TOKEN_COUNT_HISTOGRAMS:
        return one_two_five_buckets(max_model_len)
    return tuple(float(edge) for edge in FIXED_BUCKETS[family.name])


def families_for(role: str) -> tuple[Family, ...]:
    """The vLLM families a replica in ``role`` exposes."""
    return tuple(f for f in FAMILIES if role != "aggregated" or not f.pd_only)


# ----- the HTTP families of vLLM's API server (prometheus-fastapi-instrumentator) --------------------------
HTTP_HIGHR_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0,
                                         3.5, 4.0, 4.5, 5.0, 7.5, 10.0, 30.0, 60.0)
HTTP_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0)
HTTP_HELP: dict[str, str] = {
    "http_requests": "Total number of requests by method, status and handler.",
    "http_request_size_bytes": "Content length of incoming requests by handler. Only value of header is "
                               "respected. Otherwise ignored. No percentile calculated. ",
    "http_response_size_bytes": "Content length of outgoing responses by handler. Only value of header is "
                                "respected. Otherwise ignored. No percentile calculated. ",
    "http_request_duration_highr_seconds": "Latency with many buckets but no API specific labels. Made for more "
                                           "accurate percentile calculations. ",
    "http_request_duration_seconds": "Latency with only few buckets by handler. Made to be only used if "
                                     "aggregation by handler is important. ",
}
INSTRUMENTED_PATHS: tuple[str, ...] = ("/v1/models", "/v1/completions", "/v1/chat/completions")
"""Handlers the HTTP families count (vLLM's instrumentator leaves out /metrics and /health)."""

CACHE_CONFIG_LABELS: tuple[str, ...] = (
    "_block_size_resolved", "block_size", "cache_dtype", "cache_hit_alignment_tokens",
    "effective_attention_block_size", "enable_mamba_shared_prefix_checkpoint", "enable_prefix_caching", "engine",
    "gpu_memory_utilization", "hash_block_size", "is_attention_free", "kv_cache_dtype_skip_layers",
    "kv_cache_layout", "kv_cache_max_concurrency", "kv_cache_memory_bytes", "kv_cache_size_tokens",
    "kv_offloading_backend", "kv_offloading_size", "kv_sharing_fast_prefill", "mamba_block_size",
    "mamba_cache_dtype", "mamba_cache_mode", "mamba_page_size_padded", "mamba_ssm_cache_dtype", "num_cpu_blocks",
    "num_gpu_blocks", "num_gpu_blocks_override", "prefix_cache_retention_interval", "prefix_caching_hash_algo",
    "prefix_match_unit", "replayssm_buffer_len", "skip_page_size_padded", "sliding_window", "swa_bounded_replay",
    "use_kda_recoverssm", "use_replayssm", "user_specified_block_size",
)
"""Labels of ``vllm:cache_config_info`` (one sample, value 1, the cache settings as label values)."""
CACHE_CONFIG_HELP = "Information of the LLMEngine CacheConfig"
