"""``/metrics`` of an emulated replica: vLLM's families (``families.py``) fed by the engine's events.

Served with ``prometheus_client`` as vLLM serves them, so the text format, the ``_created`` series and the
process and Python collectors match a real replica's scrape. Latencies are measured on the engine's clock
(the wall clock in a running emulator), from the request's arrival at the engine, as vLLM measures them.

Not emulated, left at zero as a default vLLM reports them: prefix caching (no prompt is ever a cache hit
locally), multi-modal caches, MFU estimates, NIXL failures and expiries, admission rejections (the emulator
has no queue limit).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from disaggpilot.env.metrics import tpot_s
from disaggpilot.localcluster.emulator.engine import Engine, EngineRequest
from disaggpilot.localcluster.emulator.families import (
    CACHE_CONFIG_HELP,
    CACHE_CONFIG_LABELS,
    COUNTER,
    GAUGE,
    HTTP_BUCKETS,
    HTTP_HELP,
    HTTP_HIGHR_BUCKETS,
    INSTRUMENTED_PATHS,
    Family,
    buckets_for,
    families_for,
)

ENGINE_INDEX = "0"
# Label values vLLM creates at start-up (every child exists, at zero), by label name, then by family.
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "stage": ("waiting_to_start", "in_progress", "completed_waiting"),
    "sleep_state": ("awake", "weights_offloaded", "discard_all"),
    "finished_reason": ("stop", "length", "abort", "error", "repetition"),
}
FAMILY_LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "num_requests_waiting_by_reason": ("capacity", "deferred"),
    "admission_rejections": ("max_num_queued_reqs", "max_num_queued_tokens"),
    "prompt_tokens_by_source": ("local_compute", "local_cache_hit", "external_kv_transfer"),
    "prompt_tokens_cached_by_source": ("device", "host", "p2p", "disk", "external_unspecified"),
}


class ReplicaMetrics:
    """The replica's metric registry; an :class:`~localcluster.emulator.engine.EngineObserver`.

    Args:
        role: ``prefill``, ``decode`` or ``aggregated`` (P/D roles add the NIXL families).
        model_name: the ``model_name`` label (the served model name).
        max_model_len: sets the token-count histograms' edges (tokens).
        kv_bytes_per_token: KV-cache bytes of one token, for the NIXL bytes histogram (bytes).
        cache_info: label values of ``vllm:cache_config_info`` (missing labels read ``None``).
    """

    def __init__(self, role: str, model_name: str, max_model_len: int, kv_bytes_per_token: float,
                 cache_info: dict[str, str]) -> None:
        self.registry = CollectorRegistry()
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        ProcessCollector(registry=self.registry)
        self.kv_bytes_per_token = kv_bytes_per_token
        self._labels = {"engine": ENGINE_INDEX, "model_name": model_name}
        self._families: dict[str, Any] = {}
        for family in families_for(role):
            self._families[family.name] = self._register(family, max_model_len)
        self._set_constant_series(cache_info)
        self._http = _HttpMetrics(self.registry)

    def _register(self, family: Family, max_model_len: int) -> Any:
        name, labels = family.full_name, list(family.labels)
        if family.kind == COUNTER:
            metric: Any = Counter(name, family.help, labels, registry=self.registry)
        elif family.kind == GAUGE:
            metric = Gauge(name, family.help, labels, registry=self.registry)
        else:
            metric = Histogram(name, family.help, labels, registry=self.registry,
                               buckets=buckets_for(family, max_model_len))
        extra = [label for label in family.labels if label not in ("engine", "model_name")]
        base = {k: v for k, v in self._labels.items() if k in family.labels}
        if not extra:
            return metric.labels(**base)
        values = FAMILY_LABEL_VALUES.get(family.name) or LABEL_VALUES[extra[0]]
        return {value: metric.labels(**base, **{extra[0]: value}) for value in values}

    def _set_constant_series(self, cache_info: dict[str, str]) -> None:
        self._families["engine_sleep_state"]["awake"].set(1)
        info = Gauge("vllm:cache_config_info", CACHE_CONFIG_HELP, list(CACHE_CONFIG_LABELS), registry=self.registry)
        values = {label: "None" for label in CACHE_CONFIG_LABELS}
        values.update(cache_info, engine=ENGINE_INDEX)
        info.labels(**values).set(1)

    def _inc(self, name: str, amount: float = 1.0, key: str | None = None) -> None:
        family = self._families.get(name)
        if family is not None:
            (family[key] if key is not None else family).inc(amount)

    def _observe(self, name: str, value: float) -> None:
        family = self._families.get(name)
        if family is not None:
            family.observe(value)

    # ----- EngineObserver ----------------------------------------------------------------------------------
    def iteration(self, tokens: int, duration_s: float) -> None:
        """Tokens per engine step."""
        self._observe("iteration_tokens_total", tokens)

    def token(self, request: EngineRequest, now: float) -> None:
        """Count an output token; the first one closes the prompt's accounting and the TTFT."""
        self._inc("generation_tokens")
        if request.generated == 1:
            self._observe("time_to_first_token_seconds", now - request.arrival)
            self._count_prompt(request)
        elif request.last_token_at is not None:
            self._observe("inter_token_latency_seconds", now - request.last_token_at)

    def _count_prompt(self, request: EngineRequest) -> None:
        tokens = request.prompt_tokens
        self._inc("prompt_tokens", tokens)
        self._inc("prefix_cache_queries", tokens)
        if request.kv_mode != "remote_prefill":
            self._inc("prompt_tokens_by_source", tokens, "local_compute")
            return
        # As vLLM counts a prompt whose KV came over NIXL: external cache hits, cached from a peer.
        self._inc("prompt_tokens_by_source", tokens, "external_kv_transfer")
        self._inc("prompt_tokens_cached", tokens)
        self._inc("prompt_tokens_cached_by_source", tokens, "p2p")
        self._inc("external_prefix_cache_queries", tokens)
        self._inc("external_prefix_cache_hits", tokens)

    def finished(self, request: EngineRequest) -> None:
        """Count the request and observe its per-request histograms."""
        reason = request.finish_reason or "error"
        self._inc("request_success", key=reason)
        if reason == "abort" or request.first_token_at is None or request.finished_at is None:
            return
        scheduled = request.scheduled_at if request.scheduled_at is not None else request.arrival
        first, end = request.first_token_at, request.finished_at
        for name, value in (
            ("e2e_request_latency_seconds", end - request.arrival),
            ("request_queue_time_seconds", scheduled - request.arrival),
            ("request_inference_time_seconds", end - scheduled),
            ("request_prefill_time_seconds", first - scheduled),
            ("request_decode_time_seconds", end - first),
            ("request_time_per_output_token_seconds", tpot_s(first, end, request.generated)),
            ("request_prompt_tokens", request.prompt_tokens),
            ("request_generation_tokens", request.generated),
            ("request_max_num_generation_tokens", request.max_tokens),
            ("request_params_n", 1),
            ("request_params_max_tokens", request.max_tokens),
            ("request_num_preemptions", request.preemptions),
            ("request_prefill_kv_computed_tokens", request.prompt_tokens),
        ):
            self._observe(name, value)

    def preempted(self, request: EngineRequest) -> None:
        """Count a preemption."""
        self._inc("num_preemptions")

    def kv_transfer(self, request: EngineRequest, duration_s: float) -> None:
        """Observe a NIXL transfer of the request's prompt KV (decode side)."""
        self._observe("nixl_xfer_time_seconds", duration_s)
        self._observe("nixl_post_time_seconds", 0.0)
        self._observe("nixl_bytes_transferred", request.prompt_tokens * self.kv_bytes_per_token)
        self._observe("nixl_num_descriptors", request.blocks)

    # ----- scrape ------------------------------------------------------------------------------------------
    def refresh(self, engine: Engine) -> None:
        """Set the gauges from the engine's state (called before each scrape)."""
        in_progress, landed = engine.transferring()
        starting = sum(1 for r in engine.waiting if r.kv_mode == "remote_prefill" and r.kv_ready_at is None)
        families = self._families
        families["num_requests_running"].set(len(engine.running))
        families["num_requests_waiting"].set(len(engine.waiting))
        families["num_requests_waiting_by_reason"]["deferred"].set(in_progress)
        families["num_requests_waiting_by_reason"]["capacity"].set(len(engine.waiting) - in_progress)
        families["kv_cache_usage_perc"].set(engine.kv_usage)
        if "num_requests_kv_fetch_by_stage" in families:
            stages = families["num_requests_kv_fetch_by_stage"]
            stages["waiting_to_start"].set(starting)
            stages["in_progress"].set(in_progress)
            stages["completed_waiting"].set(landed)

    def render(self, engine: Engine) -> bytes:
        """The Prometheus text exposition of every family, gauges fresh."""
        self.refresh(engine)
        return generate_latest(self.registry)

    def observe_http(self, path: str, method: str, status: int, request_bytes: int, response_bytes: int,
                     duration_s: float) -> None:
        """Count one HTTP request to an instrumented handler (others are ignored, as vLLM does)."""
        if path in INSTRUMENTED_PATHS:
            self._http.observe(path, method, status, request_bytes, response_bytes, duration_s)


class _HttpMetrics:
    """The families prometheus-fastapi-instrumentator adds to vLLM's API server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("http_requests", HTTP_HELP["http_requests"], ["handler", "method", "status"],
                                registry=registry)
        self.request_size = Summary("http_request_size_bytes", HTTP_HELP["http_request_size_bytes"], ["handler"],
                                    registry=registry)
        self.response_size = Summary("http_response_size_bytes", HTTP_HELP["http_response_size_bytes"],
                                     ["handler"], registry=registry)
        self.duration_highr = Histogram("http_request_duration_highr_seconds",
                                        HTTP_HELP["http_request_duration_highr_seconds"], registry=registry,
                                        buckets=HTTP_HIGHR_BUCKETS)
        self.duration = Histogram("http_request_duration_seconds", HTTP_HELP["http_request_duration_seconds"],
                                  ["handler", "method"], registry=registry, buckets=HTTP_BUCKETS)

    def observe(self, path: str, method: str, status: int, request_bytes: int, response_bytes: int,
                duration_s: float) -> None:
        self.requests.labels(handler=path, method=method, status=f"{status // 100}xx").inc()
        self.request_size.labels(handler=path).observe(request_bytes)
        self.response_size.labels(handler=path).observe(response_bytes)
        self.duration_highr.observe(duration_s)
        self.duration.labels(handler=path, method=method).observe(duration_s)
