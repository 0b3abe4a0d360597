"""``summary.md``: results aggregated over seeds, one table per scenario, policies sorted by tokens per dollar.

A policy is marked ✓ when every tenant met its attainment target on every seed; DESIGN §2 compares the
economics of policies only at equal or better SLO attainment, so read tokens/$ among the ✓ rows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.evaluation.episode import EpisodeResult


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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite ``values`` (std 0 for one value; NaN for none)."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


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
    ) for (scenario, policy), group in groups.items()]


def _pm(value: tuple[float, float], digits: int, seeds: int) -> str:
    """``mean ± std``; the mean alone for one seed; ``n/a`` when there is no value."""
    mean, std = value
    if math.isnan(mean):
        return "n/a"
    return f"{mean:,.{digits}f}" if seeds == 1 else f"{mean:,.{digits}f} ± {std:,.{digits}f}"


def scenario_table(aggregates: Sequence[PolicyAggregate]) -> str:
    """A markdown table of one scenario's policies, best goodput tokens per USD first."""
    def key(item: PolicyAggregate) -> float:
        return -item.tokens_per_usd[0] if not math.isnan(item.tokens_per_usd[0]) else math.inf

    lines = ["| policy | goodput tok/$ | $/M goodput tok | min attainment | cost $ | scale actions | meets SLO |",
             "|---|---:|---:|---:|---:|---:|:---:|"]
    for item in sorted(aggregates, key=key):
        n = item.seeds
        lines.append(f"| {item.policy} | {_pm(item.tokens_per_usd, 0, n)} | {_pm(item.usd_per_million_tokens, 3, n)} "
                     f"| {_pm(item.min_attainment, 3, n)} | {_pm(item.cost_usd, 2, n)} | {item.scale_actions:.1f} "
                     f"| {'✓' if item.meets_slo else '✗'} |")
    return "\n".join(lines)


def summary_markdown(results: Sequence[EpisodeResult], plots: Sequence[Path] = (),
                     header: Sequence[str] = ()) -> str:
    """The whole ``summary.md``: a header, one table per scenario, the plots and any failed episodes."""
    aggregates = aggregate([result.row for result in results if result.error is None])
    lines = ["# Policy evaluation", "", *header]
    lines += ["", "Mean ± standard deviation over seeds. ✓: every tenant met its attainment target on every "
                  "seed; compare economics among ✓ policies (DESIGN §2)."]
    for scenario in dict.fromkeys(item.scenario for item in aggregates):
        seeds = max(item.seeds for item in aggregates if item.scenario == scenario)
        lines += ["", f"## {scenario} ({seeds} seed{'s' if seeds != 1 else ''})", ""]
        lines.append(scenario_table([item for item in aggregates if item.scenario == scenario]))
    if plots:
        lines += ["", "## Plots", "", *[f"- [{path.name}](plots/{path.name})" for path in plots]]
    failures = [result for result in results if result.error is not None]
    if failures:
        lines += ["", "## Failed episodes", ""]
        lines += [f"- {r.policy} on {r.scenario} seed {r.seed}: {_last_line(r.error)}" for r in failures]
    return "\n".join(lines) + "\n"


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
