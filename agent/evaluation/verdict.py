"""The verdict of an evaluation: per scenario, which policies hold every tenant's target in every episode, and
what each earns against the references an operator compares with.

The rule (``docs/metrics.md``): policies are compared on economics only at equal or better SLO attainment. So a
scenario's verdict lists first the *holders* (every tenant met its attainment target in every episode), best
goodput tokens per dollar first, with their tokens/$ and cost as ratios to :attr:`VerdictSettings.reference`
(a fixed configuration an operator would pick without a controller) and their tokens/$ as a ratio to
:attr:`VerdictSettings.upper` (the best schedule in hindsight); then the policies that miss, the smallest miss
first, each with its worst miss (tenant, attainment, target, seed). Rows are ``results.csv`` rows
(:func:`agent.evaluation.records.results_row`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from disaggpilot.env.errors import require


@dataclass(frozen=True)
class VerdictSettings:
    """Which policies the verdict's ratio columns divide by (``verdict:`` in ``configs/evaluate.yaml``)."""

    reference: str | None = "static_tuned"
    """The policy whose goodput tokens/$ and cost are the denominators of the ``vs reference`` ratios: what an
    operator runs without a controller. None: no such columns. Absent from a run: the columns say n/a."""
    upper: str | None = "dynamic_oracle"
    """The policy whose goodput tokens/$ is the denominator of the ``vs upper`` ratio: the most any schedule
    earned in hindsight. None: no such column. Absent from a run: the column says n/a."""

    def __post_init__(self) -> None:
        for key in ("reference", "upper"):
            value = getattr(self, key)
            require(value is None or (isinstance(value, str) and value.strip() == value and value != ""),
                    f"verdict.{key}", value, "name a policy of `policies` (e.g. static_tuned), or null for no ratio")


@dataclass
class PolicyAggregate:
    """One policy on one scenario, over its seeds (USD, tokens, fractions)."""

    scenario: str
    policy: str
    seeds: int
    tokens_per_usd: tuple[float, float]
    """Mean and standard deviation of goodput tokens per USD."""
    usd_per_million_tokens: tuple[float, float]
    """Mean and standard deviation of USD per million goodput tokens."""
    min_attainment: tuple[float, float]
    """Mean and standard deviation of the lowest tenant attainment."""
    cost_usd: tuple[float, float]
    """Mean and standard deviation of the episode's cost."""
    scale_actions: float
    """Mean number of intervals that changed a replica target."""
    meets_slo: bool
    """Every tenant met its target on every seed."""
    worst_attainment: float = math.nan
    """The lowest tenant attainment of any seed (NaN when no tenant was judged)."""
    sees_future: bool = False
    """The policy knew the episode in advance (an oracle reference, not a deployable controller)."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite ``values`` (std 0 for one value; NaN for none)."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _lowest(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if not math.isnan(float(v))]
    return min(finite) if finite else math.nan


def aggregate(rows: Sequence[dict[str, Any]]) -> list[PolicyAggregate]:
    """One aggregate per (scenario, policy), in order of first appearance."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["policy"]), []).append(row)
    return [PolicyAggregate(
        scenario=scenario, policy=policy, seeds=len(group),
        tokens_per_usd=mean_std([r["goodput_tokens_per_usd"] for r in group]),
        usd_per_million_tokens=mean_std([r["usd_per_million_goodput_tokens"] for r in group]),
        min_attainment=mean_std([r["min_attainment"] for r in group]),
        cost_usd=mean_std([r["cost_usd"] for r in group]),
        scale_actions=statistics.fmean(r["scale_actions"] for r in group),
        meets_slo=all(bool(r["meets_slo"]) for r in group),
        worst_attainment=_lowest([r["min_attainment"] for r in group]),
        sees_future=any(bool(r.get("sees_future", False)) for r in group),
    ) for (scenario, policy), group in groups.items()]


@dataclass(frozen=True)
class Miss:
    """The worst miss of a policy on a scenario: the tenant furthest below its target, in which episode."""

    tenant: str
    attainment: float
    """The tenant's SLO attainment over the episode (fraction of judged requests that met the SLO)."""
    target: float
    """The tenant's attainment target (fraction)."""
    seed: int
    """The episode's seed."""

    @property
    def shortfall(self) -> float:
        """How far below its target the tenant fell (fraction)."""
        return self.target - self.attainment


def tenant_misses(row: dict[str, Any]) -> list[Miss]:
    """Every tenant of one results row below its target (a tenant with no judged request never misses)."""
    misses = []
    for key in row:
        if key.startswith("attainment/"):
            tenant = key.split("/", 1)[1]
            attainment, target = float(row[key]), float(row[f"target/{tenant}"])
            if not math.isnan(attainment) and attainment < target:
                misses.append(Miss(tenant, attainment, target, int(row["seed"])))
    return misses


def worst_miss(rows: Sequence[dict[str, Any]]) -> Miss | None:
    """The largest shortfall over the rows' episodes and tenants; None when every tenant held everywhere."""
    misses = [miss for row in rows for miss in tenant_misses(row)]
    return max(misses, key=lambda miss: (miss.shortfall, -miss.seed)) if misses else None


@dataclass(frozen=True)
class Verdict:
    """One policy on one scenario: its aggregate, whether it holds, and its ratios to the references.

    A ratio is NaN when its reference is not configured, did not run on the scenario, or has no finite value.
    """

    aggregate: PolicyAggregate
    miss: Miss | None
    """The worst miss; None for a holder."""
    missed_episodes: int
    """Episodes in which some tenant missed its target."""
    tokens_vs_reference: float = math.nan
    """Mean goodput tokens/$ over the reference's (above 1: earns more per dollar)."""
    cost_vs_reference: float = math.nan
    """Mean cost over the reference's (below 1: spends less)."""
    tokens_vs_upper: float = math.nan
    """Mean goodput tokens/$ over the upper reference's (1: as good as the best schedule in hindsight)."""

    @property
    def holds(self) -> bool:
        """Every tenant met its target in every episode."""
        return self.miss is None


def _ratio(value: float, reference: PolicyAggregate | None, pick: str) -> float:
    if reference is None:
        return math.nan
    denominator = getattr(reference, pick)[0]
    if math.isnan(value) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return value / denominator


def _order(verdict: Verdict) -> tuple[int, float, float]:
    """Holders first, best tokens/$ first; then missers, the smallest shortfall first."""
    tokens = verdict.aggregate.tokens_per_usd[0]
    by_tokens = -tokens if not math.isnan(tokens) else math.inf
    if verdict.miss is None:
        return 0, by_tokens, 0.0
    return 1, verdict.miss.shortfall, by_tokens


def scenario_verdicts(rows: Sequence[dict[str, Any]], settings: VerdictSettings) -> list[Verdict]:
    """The verdicts of one scenario's rows, in the verdict's order (holders by tokens/$, then missers)."""
    aggregates = {item.policy: item for item in aggregate(rows)}
    reference = aggregates.get(settings.reference) if settings.reference else None
    upper = aggregates.get(settings.upper) if settings.upper else None
    verdicts = []
    for item in aggregates.values():
        mine = [row for row in rows if row["policy"] == item.policy]
        verdicts.append(Verdict(
            aggregate=item, miss=worst_miss(mine), missed_episodes=sum(bool(tenant_misses(row)) for row in mine),
            tokens_vs_reference=_ratio(item.tokens_per_usd[0], reference, "tokens_per_usd"),
            cost_vs_reference=_ratio(item.cost_usd[0], reference, "cost_usd"),
            tokens_vs_upper=_ratio(item.tokens_per_usd[0], upper, "tokens_per_usd")))
    return sorted(verdicts, key=_order)


def verdicts_by_scenario(rows: Sequence[dict[str, Any]], settings: VerdictSettings) -> dict[str, list[Verdict]]:
    """Scenario name → :func:`scenario_verdicts`, scenarios in order of first appearance."""
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    return {scenario: scenario_verdicts([row for row in rows if row["scenario"] == scenario], settings)
            for scenario in scenarios}
