"""The gateway's per-tenant series (docs/metrics.md), under the names and bucket edges of :mod:`env.metrics`.

Requests are judged with the simulator's judgement, :func:`env.metrics.judge` (docs/metrics.md): TTFT is
observed at the first token, TPOT (:func:`env.metrics.tpot_s`, (e2e − TTFT) / (output − 1)) for outputs
longer than one token, and each request is judged once: *met* when it finishes within both objectives,
*missed* when it does not, is refused (429, no replica, lost after every retry), or has waited past its TTFT
objective without a first token (judged then, so an overload shows at once). Only the tenant's name is a
label: no key, no body.

Operational series beyond the contract: ``disaggpilot_gateway_upstream_retries_total`` (attempts redone on
another replica), ``disaggpilot_gateway_requests_failed_total`` (requests lost after every retry; also
counted as rejected) and ``disaggpilot_gateway_requests_refused_total{tenant,reason}`` (every 4xx answer, by
the fixed reasons of :data:`~localcluster.gateway.errors.REFUSAL_REASONS`; a request whose key is missing or
unknown counts under tenant ``unknown``, never under its key). Refusals before admission are not arrivals,
so they stay out of the contract's series and out of the controller's observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from disaggpilot.env.metrics import (
    BUCKETS,
    GW_ARRIVED,
    GW_E2E,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_GOODPUT_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_IN_FLIGHT,
    GW_MET,
    GW_MISSED,
    GW_PROMPT_TOKENS,
    GW_REJECTED,
    GW_TPOT,
    GW_TTFT,
    MISSED,
    TENANT_COUNTERS,
    TENANT_HISTOGRAMS,
    Judgement,
    judge,
    tpot_s,
)
from disaggpilot.localcluster.gateway.config import TenantConfig
from disaggpilot.localcluster.gateway.errors import REFUSAL_REASONS

GW_RETRIES = "disaggpilot_gateway_upstream_retries_total"
GW_FAILED = "disaggpilot_gateway_requests_failed_total"
GW_REFUSED = "disaggpilot_gateway_requests_refused_total"
UNKNOWN_TENANT = "unknown"
"""The ``tenant`` label of a refusal whose API key is missing or matches no tenant."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_HELP = {
    GW_ARRIVED: "Requests accepted for admission (authenticated and well formed).",
    GW_FINISHED: "Requests whose last token reached the client.",
    GW_MET: "Requests that met both TTFT and TPOT objectives.",
    GW_MISSED: "Requests judged missed: slow, refused, lost, or past TTFT objective without a token.",
    GW_REJECTED: "Requests refused (429, no replica) or lost after every retry.",
    GW_PROMPT_TOKENS: "Prompt tokens of finished requests.",
    GW_GENERATION_TOKENS: "Output tokens of finished requests.",
    GW_GOODPUT_PROMPT_TOKENS: "Prompt tokens of requests that met their objectives.",
    GW_GOODPUT_GENERATION_TOKENS: "Output tokens of requests that met their objectives.",
    GW_TTFT: "Arrival at the gateway to first output token sent to the client (seconds).",
    GW_TPOT: "(e2e - TTFT) / (output tokens - 1) per request (seconds).",
    GW_E2E: "Arrival at the gateway to last output token sent to the client (seconds).",
}


class GatewayMetrics:
    """Per-tenant counters, histograms and the in-flight gauge, in a registry of their own.

    Args:
        tenants: every tenant; their series exist (at zero) from the start.
    """

    def __init__(self, tenants: list[TenantConfig]) -> None:
        self.registry = CollectorRegistry()
        self.objectives = {t.name: t for t in tenants}
        self.counters = {name: Counter(name, _HELP[name], ["tenant"], registry=self.registry)
                         for name in TENANT_COUNTERS}
        self.histograms = {name: Histogram(name, _HELP[name], ["tenant"], registry=self.registry,
                                           buckets=BUCKETS[name]) for name in TENANT_HISTOGRAMS}
        self.in_flight = Gauge(GW_IN_FLIGHT, "Requests arrived and not finished.", ["tenant"], registry=self.registry)
        self.retries = Counter(GW_RETRIES, "Attempts redone on another replica.", ["tenant"], registry=self.registry)
        self.failed = Counter(GW_FAILED, "Requests lost after every retry.", ["tenant"], registry=self.registry)
        self.refused = Counter(GW_REFUSED, "Requests answered 4xx, by reason.", ["tenant", "reason"],
                               registry=self.registry)
        for reason in REFUSAL_REASONS:
            for tenant in (*self.objectives, UNKNOWN_TENANT):
                if tenant != UNKNOWN_TENANT or reason == "unauthorized":
                    self.refused.labels(tenant=tenant, reason=reason)
        for tenant in self.objectives:
            for family in (*self.counters.values(), *self.histograms.values(), self.in_flight, self.retries,
                           self.failed):
                family.labels(tenant=tenant)

    def exposition(self) -> bytes:
        """The Prometheus text format of every series."""
        return generate_latest(self.registry)

    def arrive(self, tenant: str, now_s: float) -> RequestTrack:
        """Count an arrival; the returned track judges the request as it progresses."""
        self.counters[GW_ARRIVED].labels(tenant=tenant).inc()
        return RequestTrack(self, tenant, now_s)

    def refuse(self, tenant: str, reason: str) -> None:
        """Count a 4xx answer of ``tenant`` (or :data:`UNKNOWN_TENANT`) for ``reason``."""
        self.refused.labels(tenant=tenant, reason=reason).inc()

    def count(self, name: str, tenant: str, amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name`` of ``tenant``."""
        self.counters[name].labels(tenant=tenant).inc(amount)


@dataclass
class RequestTrack:
    """One admitted request's progress; every method is safe to call once the request is judged."""

    metrics: GatewayMetrics
    tenant: str
    arrival_s: float
    first_token_s: float = math.nan
    judged: bool = False
    admitted: bool = False
    done: bool = False

    def admit(self) -> None:
        """The request passed admission: it is in flight."""
        self.admitted = True
        self.metrics.in_flight.labels(tenant=self.tenant).inc()

    def first_token(self, now_s: float) -> None:
        """The first output token was sent to the client at ``now_s``."""
        if math.isnan(self.first_token_s):
            self.first_token_s = now_s
            self.metrics.histograms[GW_TTFT].labels(tenant=self.tenant).observe(now_s - self.arrival_s)

    def judge_late(self, now_s: float) -> None:
        """Called at the TTFT objective: without a first token by then the request has missed."""
        if not self.judged and not self.done and math.isnan(self.first_token_s):
            self._judge(MISSED)

    def retried(self) -> None:
        """An attempt failed and is redone elsewhere."""
        self.metrics.retries.labels(tenant=self.tenant).inc()

    def finish(self, now_s: float, prompt_tokens: int, output_tokens: int) -> None:
        """The last token reached the client: count tokens, observe latencies, judge."""
        self.first_token(now_s)
        ttft = self.first_token_s - self.arrival_s
        tpot = tpot_s(self.first_token_s, now_s, output_tokens)
        metrics, tenant = self.metrics, self.tenant
        metrics.count(GW_FINISHED, tenant)
        metrics.count(GW_PROMPT_TOKENS, tenant, prompt_tokens)
        metrics.count(GW_GENERATION_TOKENS, tenant, output_tokens)
        metrics.histograms[GW_E2E].labels(tenant=tenant).observe(now_s - self.arrival_s)
        if output_tokens > 1:
            metrics.histograms[GW_TPOT].labels(tenant=tenant).observe(tpot)
        if not self.judged:
            self._judge(judge(ttft, tpot, prompt_tokens, output_tokens, metrics.objectives[tenant]))
        self._close()

    def reject(self, *, lost: bool = False) -> None:
        """Refused (429, no replica) or, with ``lost``, failed on every attempt: a miss."""
        self.metrics.count(GW_REJECTED, self.tenant)
        if lost:
            self.metrics.failed.labels(tenant=self.tenant).inc()
        if not self.judged:
            self._judge(MISSED)
        self._close()

    def abandon(self) -> None:
        """The client went away before the end: no longer in flight, not judged further."""
        self._close()

    def _judge(self, judgement: Judgement) -> None:
        self.judged = True
        metrics, tenant = self.metrics, self.tenant
        metrics.count(GW_MET if judgement.met else GW_MISSED, tenant)
        if judgement.met:
            metrics.count(GW_GOODPUT_PROMPT_TOKENS, tenant, judgement.goodput_prompt_tokens)
            metrics.count(GW_GOODPUT_GENERATION_TOKENS, tenant, judgement.goodput_output_tokens)

    def _close(self) -> None:
        if not self.done and self.admitted:
            self.metrics.in_flight.labels(tenant=self.tenant).dec()
        self.done = True
