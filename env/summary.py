"""Whole-run figures from a sequence of snapshots: the per-tenant table every run prints (docs/metrics.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from disaggpilot.env.metrics import (
    GW_ARRIVED,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_GOODPUT_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_MET,
    GW_MISSED,
    GW_PROMPT_TOKENS,
    GW_REJECTED,
    GW_TPOT,
    GW_TTFT,
    MetricsSnapshot,
    TenantMetrics,
)
from disaggpilot.env.workload import TenantSpec


@dataclass
class TenantSummary:
    """One tenant over a whole run. Latencies in seconds, cost in USD."""

    tenant: str
    requests: int
    finished: int
    rejected: int
    attainment: float
    target: float
    ttft_p50_s: float
    ttft_p90_s: float
    tpot_p50_s: float
    tpot_p90_s: float
    goodput_tokens: float
    cost_usd: float
    """The run's cost shared out by each tenant's share of processed tokens."""
    goodput_tokens_per_usd: float
    usd_per_million_goodput_tokens: float


@dataclass
class RunSummary:
    """A run: per-tenant rows and cluster totals."""

    tenants: list[TenantSummary]
    duration_s: float
    cost_usd: float
    gpu_hours: float
    goodput_tokens: float
    goodput_tokens_per_usd: float
    usd_per_million_goodput_tokens: float
    min_attainment: float

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return asdict(self)

    def table(self) -> str:
        """A fixed-width table: one row per tenant, then the totals."""
        header = (f"{'tenant':<14}{'requests':>9}{'attain':>8}{'target':>7}{'ttft p50':>9}{'ttft p90':>9}"
                  f"{'tpot p50':>9}{'tpot p90':>9}{'goodput tok':>13}{'cost $':>9}{'tok/$':>10}{'$/Mtok':>8}")
        lines = [header, "-" * len(header)]
        for row in self.tenants:
            lines.append(
                f"{row.tenant:<14}{row.requests:>9}{row.attainment:>8.3f}{row.target:>7.2f}{row.ttft_p50_s:>9.3f}"
                f"{row.ttft_p90_s:>9.3f}{row.tpot_p50_s:>9.4f}{row.tpot_p90_s:>9.4f}{row.goodput_tokens:>13.0f}"
                f"{row.cost_usd:>9.2f}{row.goodput_tokens_per_usd:>10.0f}{row.usd_per_million_goodput_tokens:>8.3f}")
        lines.append("-" * len(header))
        lines.append(
            f"{'all':<14}{sum(r.requests for r in self.tenants):>9}{self.min_attainment:>8.3f}{'':>7}{'':>36}"
            f"{self.goodput_tokens:>13.0f}{self.cost_usd:>9.2f}{self.goodput_tokens_per_usd:>10.0f}"
            f"{self.usd_per_million_goodput_tokens:>8.3f}")
        lines.append(f"duration {self.duration_s:.0f} s, {self.gpu_hours:.2f} GPU-hours; 'all' attainment is the "
                     "minimum over tenants")
        return "\n".join(lines)


def merge_tenant(snapshots: Iterable[MetricsSnapshot], name: str) -> TenantMetrics:
    """One tenant's counters and histograms summed over ``snapshots``."""
    merged = TenantMetrics()
    for snapshot in snapshots:
        part = snapshot.tenants.get(name)
        if part is None:
            continue
        for key, value in part.counters.items():
            merged.counters[key] = merged.counters.get(key, 0.0) + value
        for key, histogram in part.histograms.items():
            merged.histograms[key].merge(histogram)
        merged.in_flight = part.in_flight
    return merged


def summarize(snapshots: Sequence[MetricsSnapshot], tenants: Sequence[TenantSpec]) -> RunSummary:
    """Summarise a run from its snapshots and the tenants' specs (targets and goodput weights)."""
    cost = sum(s.cost_usd for s in snapshots)
    merged = {t.name: merge_tenant(snapshots, t.name) for t in tenants}
    processed = {name: m.counters[GW_PROMPT_TOKENS] + m.counters[GW_GENERATION_TOKENS] for name, m in merged.items()}
    all_processed = sum(processed.values())
    rows = [_tenant_row(t, merged[t.name], cost * processed[t.name] / all_processed if all_processed else 0.0)
            for t in tenants]
    goodput = sum(r.goodput_tokens for r in rows)
    duration = snapshots[-1].end_s - snapshots[0].start_s if snapshots else 0.0
    return RunSummary(
        tenants=rows, duration_s=duration, cost_usd=cost, gpu_hours=sum(s.gpu_seconds for s in snapshots) / 3600,
        goodput_tokens=goodput, goodput_tokens_per_usd=_ratio(goodput, cost),
        usd_per_million_goodput_tokens=_ratio(cost * 1e6, goodput),
        min_attainment=min((r.attainment for r in rows if not math.isnan(r.attainment)), default=math.nan),
    )


def weighted_goodput(metrics: TenantMetrics, spec: TenantSpec) -> float:
    """Goodput tokens of one tenant with its revenue weights applied."""
    return spec.weight * (spec.prompt_token_weight * metrics.counters[GW_GOODPUT_PROMPT_TOKENS]
                          + spec.output_token_weight * metrics.counters[GW_GOODPUT_GENERATION_TOKENS])


def _tenant_row(spec: TenantSpec, metrics: TenantMetrics, cost: float) -> TenantSummary:
    counters, histograms = metrics.counters, metrics.histograms
    goodput = weighted_goodput(metrics, spec)
    return TenantSummary(
        tenant=spec.name, requests=int(counters[GW_ARRIVED]), finished=int(counters[GW_FINISHED]),
        rejected=int(counters[GW_REJECTED]),
        attainment=_ratio(counters[GW_MET], counters[GW_MET] + counters[GW_MISSED]),
        target=spec.attainment_target,
        ttft_p50_s=histograms[GW_TTFT].quantile(0.5), ttft_p90_s=histograms[GW_TTFT].quantile(0.9),
        tpot_p50_s=histograms[GW_TPOT].quantile(0.5), tpot_p90_s=histograms[GW_TPOT].quantile(0.9),
        goodput_tokens=goodput, cost_usd=cost, goodput_tokens_per_usd=_ratio(goodput, cost),
        usd_per_million_goodput_tokens=_ratio(cost * 1e6, goodput),
    )



def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan
