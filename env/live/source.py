"""``PrometheusSource``: the metrics contract (docs/metrics.md) read from Prometheus for one control interval.

For each configured pool (a label selector over its vLLM replicas) and for the gateway's per-tenant series it
evaluates, at the interval's end:

- replicas: ``up{selector}``: targets answering (1) are ready, targets not answering (0) are starting;
- gauges at the instant: ``sum`` of running and waiting requests, ``avg`` of KV-cache usage (as the
  simulator: summed over ready replicas, KV usage their mean);
- counters and histograms as ``increase(...[interval])``, summed over replicas (histograms ``by (le)``,
  turned into per-bucket counts with the contract's vLLM bucket edges);
- the gateway's counters and histograms ``by (tenant)``, and its in-flight gauge.

Both the current and the older vLLM names are read (:data:`NAME_CANDIDATES`), per replica, so a pool may mix
vLLM versions. vLLM renamed ``vllm:gpu_cache_usage_perc`` to ``vllm:kv_cache_usage_perc`` (vllm-project/vllm
#18354, see #30041) and ``vllm:time_per_output_token_seconds`` (a per-token histogram) to
``vllm:inter_token_latency_seconds`` in 0.11, removing the old name later (#32661); a vLLM too old to have
the per-request ``vllm:request_time_per_output_token_seconds`` gets its TPOT histogram from the per-token one,
the closest series it has.

Data problems are never errors and never silently zero: they are reported where ``controller.validate`` looks
and listed in :attr:`Reading.issues` (and logged):

- *missing*: a pool whose selector matches no target, a tenant the gateway has no series for, or a whole
  gateway down, is left out of the snapshot; a missing pool gauge is left out of ``gauges``; a missing
  counter or histogram of a present pool or tenant is NaN (unknown, not zero). A pool with targets but no
  ready replica is not missing: it serves nothing, so its gauges and absent counters are 0.
- *NaN* and *out-of-range* values are passed through as read (validate names them).
- *stale*: when a pool's or the gateway's newest sample is older than ``staleness_limit_s``, the snapshot ends
  when its data does (``end_s`` moved back), so validate's staleness check sees its true age.

Errors are for what is not data: Prometheus unreachable (retryable), a rejected query, a malformed answer, a
histogram without the contract's buckets, or (in :meth:`PrometheusSource.check_targets`, at start-up) a
selector matching nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from disaggpilot.env.live.config import PrometheusSourceConfig
from disaggpilot.env.live.errors import MetricsFormatError, SelectorMatchesNothingError
from disaggpilot.env.live.promql import PrometheusClient, Sample, first_of, range_of, series
from disaggpilot.env.metrics import (
    BUCKETS,
    GW_IN_FLIGHT,
    HISTORY_COUNTERS,
    ITL,
    KV_USAGE,
    POOL_COUNTERS,
    POOL_HISTOGRAMS,
    PREFIX_CACHE_COUNTERS,
    RUNNING,
    TENANT_COUNTERS,
    TENANT_HISTOGRAMS,
    TPOT,
    WAITING,
    Histogram,
    MetricsSnapshot,
    PoolMetrics,
    TenantMetrics,
)

log = logging.getLogger("disaggpilot.env.live")
TenantHistory = dict[float, dict[str, dict[str, float]]]
"""Window end (Unix seconds) -> tenant -> counter name -> increase over the window."""

NAME_CANDIDATES: Mapping[str, tuple[str, ...]] = {
    KV_USAGE: (KV_USAGE, "vllm:gpu_cache_usage_perc"),
    ITL: (ITL, "vllm:time_per_output_token_seconds"),
    TPOT: (TPOT, "vllm:time_per_output_token_seconds"),
}
"""Contract name -> the vLLM names read for it, preferred first (current, then older releases)."""
MISSING, NAN, OUT_OF_RANGE, STALE = "missing_series", "nan", "out_of_range", "stale"
"""Issue kinds; the same strings as ``controller.validate``'s fallback reasons."""
FRESHNESS_PROBES: Mapping[str, str] = {"pool": RUNNING, "gateway": GW_IN_FLIGHT}
"""The gauge whose sample timestamps tell a scope's data age (every replica / the gateway exports it)."""


def names_of(contract_name: str) -> tuple[str, ...]:
    """The vLLM names accepted for a contract name."""
    return NAME_CANDIDATES.get(contract_name, (contract_name,))


@dataclass(frozen=True)
class DataIssue:
    """Something wrong with the data of one snapshot.

    Attributes:
        kind: ``missing_series``, ``nan``, ``out_of_range`` or ``stale``.
        where: the scope and series (``pool prefill vllm:kv_cache_usage_perc``, ``tenant chat``).
        detail: what exactly, and what to check.
    """

    kind: str
    where: str
    detail: str


@dataclass
class Reading:
    """One interval read from Prometheus.

    Attributes:
        snapshot: the contract snapshot (``source="live"``); replica counts as Prometheus sees them.
        issues: every data problem found, in the order found.
        data_age_s: age of the oldest newest-sample per scope (``pool prefill``, ``gateway``) (seconds).
    """

    snapshot: MetricsSnapshot
    issues: list[DataIssue] = field(default_factory=list)
    data_age_s: dict[str, float] = field(default_factory=dict)


class _Interval:
    """The queries of one reading: where they are evaluated, over which window, and the issues found."""

    def __init__(self, client: PrometheusClient, at: float, window_s: float) -> None:
        self.client, self.at, self.window_s = client, at, window_s
        self.issues: list[DataIssue] = []

    def vector(self, promql: str) -> list[Sample]:
        return self.client.query(promql, self.at)

    def report(self, kind: str, where: str, detail: str) -> None:
        self.issues.append(DataIssue(kind, where, detail))
        log.warning("live metrics: %s: %s: %s", kind, where, detail)

    def check(self, where: str, value: float, low: float = 0.0, high: float = math.inf) -> float:
        """``value`` unchanged, reporting NaN or a value outside ``[low, high]``."""
        if math.isnan(value):
            self.report(NAN, where, "Prometheus returned NaN")
        elif not low <= value <= high:
            self.report(OUT_OF_RANGE, where, f"{value} is outside [{low}, {high}]")
        return value


class PrometheusSource:
    """Builds ``MetricsSnapshot``s from Prometheus, as the simulator does from its events.

    Args:
        config: Prometheus URL, selectors, timeouts, staleness bound.
        client: the HTTP API client (default: one over ``urllib`` from ``config``).
        tenants: tenants expected in every snapshot; one the gateway has no series for is reported missing.
    """

    def __init__(self, config: PrometheusSourceConfig, client: PrometheusClient | None = None,
                 tenants: Sequence[str] = ()) -> None:
        self.config, self.tenants = config, tuple(tenants)
        self.client = client or PrometheusClient(config.url, config.timeout_s, retry_delay_s=config.retry_delay_s)

    def check_targets(self, at: float) -> None:
        """Raise :class:`SelectorMatchesNothingError` naming every selector that matches no target at ``at``
        (Unix seconds). Called once at start-up: later, a pool without targets is a *missing* pool."""
        scopes = {f"live.prometheus.pools.{role}": sel for role, sel in self.config.pools.items()}
        scopes["live.prometheus.gateway"] = self.config.gateway
        empty = [f"{key} ({sel})" for key, sel in scopes.items() if not self.client.query(f"up{{{sel}}}", at)]
        if empty:
            raise SelectorMatchesNothingError(
                f"no scrape target in Prometheus at {self.config.url} matches {', '.join(empty)}: check the labels "
                "Prometheus gives these targets (its /targets page) and the selectors in configs/env/live.yaml")

    def read(self, start: float, end: float, origin: float = 0.0) -> Reading:
        """The interval ``[start, end]`` (Unix seconds; ``start == end`` reads gauges only), with times in the
        snapshot relative to ``origin`` (Unix seconds)."""
        query = _Interval(self.client, end, max(0.0, end - start))
        ages: dict[str, float] = {}
        pools = {}
        for role, selector in self.config.pools.items():
            pool = self._pool(query, role, selector, ages)
            if pool is not None:
                pools[role] = pool
        tenants = self._tenants(query, ages)
        data_end = min([end, *(end - age for age in ages.values() if age > self.config.staleness_limit_s)])
        snapshot = MetricsSnapshot(start_s=min(start, data_end) - origin, end_s=data_end - origin, pools=pools,
                                   tenants=tenants, source="live")
        return Reading(snapshot, query.issues, ages)

    def tenant_history(self, end: float, seconds: float, step_s: float) -> TenantHistory:
        """Each tenant's gateway counters (:data:`HISTORY_COUNTERS`) in consecutive ``step_s`` windows over the
        ``seconds`` before ``end`` (Unix seconds), by window end: one subquery a counter, ``increase`` at each
        step (Prometheus aligns the steps to multiples of ``step_s``). A counter without samples in a window,
        or with a value that is not a finite count, is absent."""
        history: TenantHistory = {}
        for name in HISTORY_COUNTERS:
            increase = first_of((name,), self.config.gateway, window_s=step_s)
            promql = f"(sum by (tenant) ({increase}))[{range_of(seconds)}:{range_of(step_s)}]"
            for found in self.client.query_series(promql, end):
                tenant = _tenant_of(found.labels, name)
                for at, value in found.points:
                    if math.isfinite(value) and value >= 0:
                        history.setdefault(at, {}).setdefault(tenant, {})[name] = value
        return history

    # ----- freshness ---------------------------------------------------------------------------------------
    def _age(self, query: _Interval, scope: str, data: str, ages: dict[str, float]) -> None:
        """Record the age of ``scope``'s oldest newest-sample, reporting it when over the bound."""
        newest = query.vector(f"min(timestamp({data}))")
        if not newest or math.isnan(newest[0].value):
            return
        age = ages[scope] = max(0.0, query.at - newest[0].value)
        if age > self.config.staleness_limit_s:
            query.report(STALE, scope, f"newest sample is {age:.1f} s old (limit live.prometheus.staleness_limit_s"
                                       f"={self.config.staleness_limit_s} s): is Prometheus still scraping it?")

    # ----- pools -------------------------------------------------------------------------------------------
    def _pool(self, query: _Interval, role: str, selector: str, ages: dict[str, float]) -> PoolMetrics | None:
        where = f"pool {role}"
        up = query.vector(series("up", selector))
        if not up:
            query.report(MISSING, where, f"no scrape target matches {{{selector}}} (live.prometheus.pools.{role})")
            return None
        ready = sum(1 for sample in up if sample.value == 1.0)
        pool = PoolMetrics(role=role, replicas_ready=ready, replicas_starting=len(up) - ready)
        if ready == 0:  # nothing serves: zero load, not missing data
            return pool
        self._age(query, where, series(FRESHNESS_PROBES["pool"], selector), ages)
        pool.gauges = self._pool_gauges(query, where, selector)
        if query.window_s > 0:
            pool.counters = {name: self._pool_counter(query, where, selector, name) for name in POOL_COUNTERS}
            pool.counters.update(self._prefix_cache_counters(query, where, selector))
            pool.histograms = {name: self._pool_histogram(query, where, selector, name) for name in POOL_HISTOGRAMS}
        return pool

    def _pool_gauges(self, query: _Interval, where: str, selector: str) -> dict[str, float]:
        gauges = {}
        for name, how, high in ((RUNNING, "sum", math.inf), (WAITING, "sum", math.inf), (KV_USAGE, "avg", 1.0)):
            samples = query.vector(f"{how}({first_of(names_of(name), selector)})")
            if samples:
                gauges[name] = query.check(f"{where} {name}", samples[0].value, high=high)
            else:
                query.report(MISSING, f"{where} {name}", f"no series {' or '.join(names_of(name))} in {{{selector}}}")
        return gauges

    def _pool_counter(self, query: _Interval, where: str, selector: str, name: str) -> float:
        samples = query.vector(f"sum({first_of(names_of(name), selector, window_s=query.window_s)})")
        if not samples:
            return self._unknown(query, f"{where} {name}", selector)
        return query.check(f"{where} {name}", samples[0].value)

    def _prefix_cache_counters(self, query: _Interval, where: str, selector: str) -> dict[str, float]:
        """vLLM v1's prefix-cache counters (tokens); engines without them are not missing data, just older."""
        found = {}
        for name in PREFIX_CACHE_COUNTERS:
            samples = query.vector(f"sum({first_of(names_of(name), selector, window_s=query.window_s)})")
            if samples:
                found[name] = query.check(f"{where} {name}", samples[0].value)
        return found

    def _pool_histogram(self, query: _Interval, where: str, selector: str, name: str) -> Histogram:
        names, window = names_of(name), query.window_s
        buckets = query.vector(f"sum by (le) ({first_of(names, selector, '_bucket', window)})")
        total = query.vector(f"sum({first_of(names, selector, '_sum', window)})")
        if not buckets or not total:
            return _unknown_histogram(name, self._unknown(query, f"{where} {name}", selector))
        return to_histogram(query, f"{where} {name}", name, buckets, total[0].value)

    def _unknown(self, query: _Interval, where: str, selector: str) -> float:
        query.report(MISSING, where, f"no samples in {{{selector}}} over the last {query.window_s:.1f} s "
                                     "(an interval must span at least two scrapes)")
        return math.nan

    # ----- tenants -----------------------------------------------------------------------------------------
    def _tenants(self, query: _Interval, ages: dict[str, float]) -> dict[str, TenantMetrics]:
        selector = self.config.gateway
        if not any(sample.value == 1.0 for sample in query.vector(series("up", selector))):
            query.report(MISSING, "gateway", f"no target of {{{selector}}} is up (live.prometheus.gateway): "
                                             "every tenant is missing")
            return {}
        self._age(query, "gateway", series(FRESHNESS_PROBES["gateway"], selector), ages)
        in_flight = _by_tenant(query.vector(f"sum by (tenant) ({series(GW_IN_FLIGHT, selector)})"), GW_IN_FLIGHT)
        counters = {name: self._tenant_counter(query, selector, name) for name in TENANT_COUNTERS} \
            if query.window_s > 0 else {}
        histograms = {name: self._tenant_histograms(query, selector, name) for name in TENANT_HISTOGRAMS} \
            if query.window_s > 0 else {}
        seen = set(in_flight).union(*counters.values(), *histograms.values())
        tenants = {}
        for tenant in sorted(seen | set(self.tenants)):
            if tenant not in seen:
                query.report(MISSING, f"tenant {tenant}", f"the gateway ({{{selector}}}) has no series for it; "
                                                          "it must export every configured tenant from start-up")
                continue
            tenants[tenant] = self._tenant(query, tenant, in_flight, counters, histograms)
        return tenants

    def _tenant_counter(self, query: _Interval, selector: str, name: str) -> dict[str, float]:
        increase = first_of((name,), selector, window_s=query.window_s)
        return _by_tenant(query.vector(f"sum by (tenant) ({increase})"), name)

    def _tenant_histograms(self, query: _Interval, selector: str, name: str) -> dict[str, Histogram]:
        buckets = query.vector(f"sum by (tenant, le) ({first_of((name,), selector, '_bucket', query.window_s)})")
        totals = _by_tenant(query.vector(f"sum by (tenant) ({first_of((name,), selector, '_sum', query.window_s)})"),
                            name)
        grouped: dict[str, list[Sample]] = {}
        for sample in buckets:
            grouped.setdefault(_tenant_of(sample.labels, name), []).append(sample)
        return {tenant: to_histogram(query, f"tenant {tenant} {name}", name, samples, totals.get(tenant, math.nan))
                for tenant, samples in grouped.items()}

    def _tenant(self, query: _Interval, tenant: str, in_flight: dict[str, float],
                counters: dict[str, dict[str, float]], histograms: dict[str, dict[str, Histogram]]) -> TenantMetrics:
        where = f"tenant {tenant}"
        metrics = TenantMetrics(in_flight=_in_flight(query, f"{where} {GW_IN_FLIGHT}", in_flight.get(tenant)))
        for name, values in counters.items():
            metrics.counters[name] = _known(query, f"{where} {name}", values.get(tenant))
        for name, by_tenant in histograms.items():
            histogram = by_tenant.get(tenant)
            metrics.histograms[name] = histogram if histogram is not None else \
                _unknown_histogram(name, _known(query, f"{where} {name}", None))
        return metrics


def _known(query: _Interval, where: str, value: float | None) -> float:
    """A tenant's counter: checked, or NaN (reported missing) when the gateway had no samples of it."""
    if value is None:
        query.report(MISSING, where, f"no samples over the last {query.window_s:.1f} s")
        return math.nan
    return query.check(where, value)


def _in_flight(query: _Interval, where: str, value: float | None) -> int:
    """The in-flight gauge as a count; an absent or NaN one is reported and counted as 0 (it is an int)."""
    if value is None or not math.isfinite(value):
        query.report(MISSING if value is None else NAN, where, "no finite value: in_flight reported as 0")
        return 0
    return round(query.check(where, value))


# ----- histograms --------------------------------------------------------------------------------------------
def to_histogram(query: _Interval, where: str, name: str, buckets: Sequence[Sample], total: float) -> Histogram:
    """Per-bucket counts on the contract's edges from cumulative ``le`` samples (extra edges are dropped,
    which is exact: a cumulative count at a contract edge is read, never interpolated)."""
    edges = BUCKETS[name]
    cumulative = {_le(where, sample): sample.value for sample in buckets}
    wanted = [*edges, math.inf]
    found = {edge: _lookup(cumulative, edge) for edge in wanted}
    absent = [edge for edge, value in found.items() if value is None]
    if absent:
        raise MetricsFormatError(
            f"{where}: no bucket for le={absent} (served edges {sorted(cumulative)}); the contract reads vLLM "
            f"0.32's edges {list(edges)} + +Inf (env.metrics.BUCKETS): serve those buckets, or extend the contract")
    running = np.array([found[edge] for edge in wanted], dtype=np.float64)
    counts = np.diff(running, prepend=0.0)
    # increase() extrapolates each bucket series alike; rounding may leave -1e-12 where a bucket got nothing
    counts[(counts < 0) & (counts > -1e-9 * max(1.0, float(np.nanmax(np.abs(running)))))] = 0.0
    if np.isnan(counts).any() or math.isnan(total):
        query.report(NAN, where, "Prometheus returned NaN for a bucket or the sum")
    elif (counts < 0).any():
        query.report(OUT_OF_RANGE, where, f"cumulative bucket counts decrease: {running.tolist()}")
    return Histogram(edges, counts, total)


def _le(where: str, sample: Sample) -> float:
    text = sample.labels.get("le")
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        raise MetricsFormatError(f"{where}: bucket label le={text!r} is not a number; a histogram's buckets must "
                                 "carry numeric le labels (Prometheus text format)") from None


def _lookup(cumulative: Mapping[float, float], edge: float) -> float | None:
    for served, value in cumulative.items():
        if served == edge or math.isclose(served, edge, rel_tol=1e-9):
            return value
    return None


def _unknown_histogram(name: str, value: float) -> Histogram:
    histogram = Histogram.empty(BUCKETS[name])
    histogram.counts[:] = value
    histogram.total = value
    return histogram


def _tenant_of(labels: Mapping[str, str], name: str) -> str:
    tenant = labels.get("tenant")
    if not tenant:
        raise MetricsFormatError(f"gateway series {name} has samples without a tenant label ({dict(labels)}); "
                                 "the gateway must label every per-tenant series with tenant=\"<name>\"")
    return tenant


def _by_tenant(samples: Sequence[Sample], name: str) -> dict[str, float]:
    return {_tenant_of(sample.labels, name): sample.value for sample in samples}
