"""Is a snapshot fit to decide on? Staleness, missing series, non-finite and out-of-range values.

:func:`validate_snapshot` returns None for a usable snapshot, else a :class:`Problem` whose ``reason`` is
one of a small fixed set (it becomes the ``reason`` label of ``disaggpilot_controller_fallback_total``) and
whose ``detail`` names the offending series and value (never request contents).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from disaggpilot.env.metrics import KV_USAGE, RUNNING, WAITING, Histogram, MetricsSnapshot

STALE = "stale"
NAN = "nan"
MISSING = "missing_series"
OUT_OF_RANGE = "out_of_range"
SCRAPE = "scrape_error"
POLICY = "policy_error"
BUNDLE = "bundle_mismatch"
NO_BUNDLE = "no_bundle"
ACTUATOR = "actuator"
REASONS: tuple[str, ...] = (STALE, NAN, MISSING, OUT_OF_RANGE, SCRAPE, POLICY, BUNDLE, NO_BUNDLE, ACTUATOR)
"""Every reason the controller falls back for: a bounded set, safe as a metric label."""
POOL_GAUGES: tuple[str, ...] = (RUNNING, WAITING, KV_USAGE)


@dataclass(frozen=True)
class Problem:
    """Why a decision cannot trust its inputs or its policy.

    Attributes:
        reason: one of :data:`REASONS`.
        detail: what exactly, for the log (series names and values only).
    """

    reason: str
    detail: str


def validate_snapshot(snapshot: MetricsSnapshot, now_s: float, staleness_limit_s: float,
                      pools: Sequence[str], tenants: Sequence[str]) -> Problem | None:
    """The first problem found in ``snapshot``, or None when it is usable.

    Args:
        snapshot: the interval just scraped.
        now_s: the controller's time on the snapshot's time axis (seconds since the source was reset).
        staleness_limit_s: oldest acceptable end of interval, relative to ``now_s`` (seconds).
        pools: pool roles that must be present.
        tenants: tenant names that must be present.
    """
    problem = _stale(snapshot, now_s, staleness_limit_s) or _missing(snapshot, pools, tenants)
    if problem is not None:
        return problem
    groups = list(_groups(snapshot))
    return _non_finite(groups) or _out_of_range(snapshot, groups)


def _stale(snapshot: MetricsSnapshot, now_s: float, limit_s: float) -> Problem | None:
    age = now_s - snapshot.end_s
    if not math.isfinite(snapshot.end_s) or age > limit_s:
        return Problem(STALE, f"the snapshot ended at {snapshot.end_s:.1f} s, {age:.1f} s ago (limit {limit_s} s)")
    return None


def _missing(snapshot: MetricsSnapshot, pools: Sequence[str], tenants: Sequence[str]) -> Problem | None:
    absent = [f"pool {role}" for role in pools if role not in snapshot.pools]
    absent += [f"tenant {name}" for name in tenants if name not in snapshot.tenants]
    absent += [f"pool {role} gauge {name}" for role, pool in snapshot.pools.items()
               for name in POOL_GAUGES if name not in pool.gauges]
    return Problem(MISSING, "no series for " + ", ".join(absent)) if absent else None


Group = tuple[str, Sequence[str], np.ndarray]
"""A named run of numbers: a prefix for messages, each value's name (empty: histogram buckets, then the sum),
the values."""


def _groups(snapshot: MetricsSnapshot) -> Iterator[Group]:
    """Every number of the snapshot, in arrays (checked at numpy speed), with names for messages."""
    yield "snapshot", ("start_s", "end_s", "cost_usd", "gpu_seconds"), np.array(
        [snapshot.start_s, snapshot.end_s, snapshot.cost_usd, snapshot.gpu_seconds], dtype=np.float64)
    for role, pool in snapshot.pools.items():
        yield from _mapping(f"pool {role}", pool.gauges)
        yield from _mapping(f"pool {role}", pool.counters)
        for name, histogram in pool.histograms.items():
            yield _histogram(f"pool {role} {name}", histogram)
    for tenant_name, tenant in snapshot.tenants.items():
        yield from _mapping(f"tenant {tenant_name}", tenant.counters)
        for name, histogram in tenant.histograms.items():
            yield _histogram(f"tenant {tenant_name} {name}", histogram)


def _mapping(prefix: str, values: Mapping[str, float]) -> Iterator[Group]:
    yield prefix, list(values), np.fromiter(values.values(), dtype=np.float64, count=len(values))


def _histogram(prefix: str, histogram: Histogram) -> Group:
    return prefix, (), np.append(histogram.counts, histogram.total)


def _first(groups: Iterable[Group], bad: Callable[[np.ndarray], np.ndarray]) -> tuple[str, float] | None:
    """Name and value of the first number for which ``bad`` holds."""
    for prefix, names, values in groups:
        flags = bad(values)
        if flags.any():
            index = int(np.argmax(flags))
            name = names[index] if names else "sum" if index == len(values) - 1 else f"bucket {index}"
            return f"{prefix} {name}", float(values[index])
    return None


def _non_finite(groups: list[Group]) -> Problem | None:
    found = _first(groups, lambda values: ~np.isfinite(values))
    return Problem(NAN, f"{found[0]} is {found[1]}") if found else None


def _out_of_range(snapshot: MetricsSnapshot, groups: list[Group]) -> Problem | None:
    if snapshot.end_s < snapshot.start_s:
        return Problem(OUT_OF_RANGE, f"interval ends ({snapshot.end_s}) before it starts ({snapshot.start_s})")
    for role, pool in snapshot.pools.items():
        kv = pool.gauges[KV_USAGE]
        if not 0.0 <= kv <= 1.0:
            return Problem(OUT_OF_RANGE, f"pool {role} {KV_USAGE} is {kv}, outside [0, 1]")
        counts = (pool.replicas_ready, pool.replicas_starting, pool.replicas_draining)
        if min(counts) < 0:
            return Problem(OUT_OF_RANGE, f"pool {role} replica counts {counts} include a negative one")
    found = _first(groups, lambda values: values < 0)
    if found:
        return Problem(OUT_OF_RANGE, f"{found[0]} is {found[1]}: counters, gauges and buckets cannot be negative")
    return None
