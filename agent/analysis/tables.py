"""Tables of an evaluation's results as plain rows (lists of dicts), and Markdown to show them.

Every function reads the ``EpisodeResult``s of ``agent.evaluation.evaluate`` (their ``row`` and
``timeline``); failed episodes are skipped. Units are in the column names as in ``results.csv``: ``_usd``
US dollars, ``_s`` seconds, ``tokens_per_usd`` goodput tokens per US dollar.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from disaggpilot.agent.analysis.sources import AnalysisError
from disaggpilot.agent.evaluation import EpisodeResult
from disaggpilot.agent.evaluation.verdict import VerdictSettings, aggregate, verdicts_by_scenario

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of :func:`markdown_table`."""

    key: str
    """The row key it shows."""
    header: str
    """Its heading."""
    format: str = ""
    """A ``format()`` spec for numbers, e.g. ``",.0f"``; booleans show as ✓/✗, NaN and missing as n/a."""


def _cell(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def markdown_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """A Markdown table of ``rows`` (one line per row), for ``IPython.display.Markdown``."""
    lines = ["| " + " | ".join(c.header for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c.key), c.format) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def done(results: Sequence[EpisodeResult]) -> list[EpisodeResult]:
    """The episodes that finished (no error)."""
    return [result for result in results if result.error is None]


def summary_rows(results: Sequence[EpisodeResult]) -> list[Row]:
    """One row per (scenario, policy) over seeds: means and standard deviations of the economics and the
    lowest tenant attainment, and ``meets_slo`` (every tenant on target on every seed)."""
    rows = []
    for item in aggregate([result.row for result in done(results)]):
        fields = asdict(item)
        row: Row = {"scenario": item.scenario, "policy": item.policy, "seeds": item.seeds}
        for key in ("tokens_per_usd", "usd_per_million_tokens", "min_attainment", "cost_usd"):
            row[key], row[f"{key}_std"] = fields[key]
        row.update(scale_actions=item.scale_actions, meets_slo=item.meets_slo, sees_future=item.sees_future)
        rows.append(row)
    return rows


def verdict_rows(results: Sequence[EpisodeResult], settings: VerdictSettings | None = None) -> list[Row]:
    """The verdict of ``summary.md`` as rows, in its order per scenario: holders by tokens/$ first, then the
    policies that missed, with the worst miss (``miss_*``, None for a holder) and the ratios to
    ``settings.reference`` and ``settings.upper`` (NaN where a reference did not run)."""
    rows = []
    verdicts = verdicts_by_scenario([result.row for result in done(results)], settings or VerdictSettings())
    for scenario, scenario_verdicts in verdicts.items():
        for verdict in scenario_verdicts:
            item, miss = verdict.aggregate, verdict.miss
            rows.append({"scenario": scenario, "policy": item.policy, "holds": verdict.holds,
                         "sees_future": item.sees_future, "seeds": item.seeds,
                         "tokens_per_usd": item.tokens_per_usd[0], "cost_usd": item.cost_usd[0],
                         "tokens_vs_reference": verdict.tokens_vs_reference,
                         "cost_vs_reference": verdict.cost_vs_reference, "tokens_vs_upper": verdict.tokens_vs_upper,
                         "min_attainment": item.worst_attainment, "scale_actions": item.scale_actions,
                         "missed_episodes": verdict.missed_episodes,
                         "miss_tenant": miss.tenant if miss else None,
                         "miss_attainment": miss.attainment if miss else None,
                         "miss_target": miss.target if miss else None, "miss_seed": miss.seed if miss else None})
    return rows


def tenants_of(row: Row) -> list[str]:
    """The tenants a results row reports (its ``attainment/<tenant>`` columns), in order."""
    return [key.split("/", 1)[1] for key in row if key.startswith("attainment/")]


def _mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return statistics.fmean(finite) if finite else math.nan


def tenant_rows(results: Sequence[EpisodeResult]) -> list[Row]:
    """One row per (scenario, policy, tenant), means over seeds: attainment against target, p90 TTFT and
    TPOT (seconds), and ``meets_target`` (attainment >= target on every seed)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for result in done(results):
        groups.setdefault((result.scenario, result.policy), []).append(result.row)
    rows = []
    for (scenario, policy), group in groups.items():
        for tenant in tenants_of(group[0]):
            attained = [r[f"attainment/{tenant}"] for r in group]
            rows.append({"scenario": scenario, "policy": policy, "tenant": tenant, "attainment": _mean(attained),
                         "target": group[0][f"target/{tenant}"],
                         "ttft_p90_s": _mean([r[f"ttft_p90_s/{tenant}"] for r in group]),
                         "tpot_p90_s": _mean([r[f"tpot_p90_s/{tenant}"] for r in group]),
                         "meets_target": all(a >= group[0][f"target/{tenant}"] for a in attained)})
    return rows


def episode(results: Sequence[EpisodeResult], policy: str, scenario: str, seed: int) -> EpisodeResult:
    """The finished episode of ``policy`` on ``scenario`` and ``seed``.

    Raises:
        AnalysisError: no such finished episode (the message lists the ones there are).
    """
    for result in done(results):
        if (result.policy, result.scenario, result.seed) == (policy, scenario, seed):
            return result
    cells = sorted({(r.policy, r.scenario, r.seed) for r in done(results)})
    raise AnalysisError(f"no finished episode of policy {policy!r} on {scenario!r} seed {seed}; have {cells}")
