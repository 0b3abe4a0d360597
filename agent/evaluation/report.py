"""``summary.md`` and the printed verdict: what an operator asks of an evaluation, first.

An overview (one row per policy, one column per scenario: ``1.12× ✓`` for a policy that holds every tenant's
target in every episode, with its goodput tokens/$ relative to the reference; ``✗ code 0.80/0.90`` for one that
misses, with its worst miss), then per scenario the holders, best tokens/$ first, and below them the policies
that miss (:mod:`agent.evaluation.verdict`). The terms are defined in ``docs/metrics.md``; economics are
compared only at equal or better attainment, which is why holders and missers are separate tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disaggpilot.agent.evaluation.episode import EpisodeResult
from disaggpilot.agent.evaluation.verdict import (
    Miss,
    PolicyAggregate,
    Verdict,
    VerdictSettings,
    aggregate,
    mean_std,
    verdicts_by_scenario,
)

__all__ = ["PolicyAggregate", "aggregate", "mean_std", "summary_markdown", "verdict_markdown"]

FUTURE_MARK = "*"
"""Appended to the name of a policy that sees the future."""
METRICS_DOC = "docs/metrics.md"
"""Where the terms of the tables are defined (in the repository)."""


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A Markdown table padded to aligned columns, so it reads as well in a terminal as rendered."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(header), rule + "|", *[line(row) for row in rows]])


def ratio(value: float) -> str:
    """``1.12×``; ``n/a`` when there is no ratio."""
    return "n/a" if math.isnan(value) else f"{value:.2f}×"


def number(value: float, digits: int = 0) -> str:
    """``12,345``; ``n/a`` for NaN."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def label(item: PolicyAggregate) -> str:
    """The policy's name, marked when it sees the future."""
    return item.policy + (FUTURE_MARK if item.sees_future else "")


def miss_text(miss: Miss) -> str:
    """``code 0.800/0.90``: the tenant, its attainment and its target."""
    return f"{miss.tenant} {miss.attainment:.3f}/{miss.target:.2f}"


def holders_table(verdicts: Sequence[Verdict], settings: VerdictSettings) -> str:
    """The policies that hold every target: tokens/$, cost, the ratios, worst attainment, scale actions."""
    header = ["policy", "goodput tok/$", "cost $"]
    if settings.reference:
        header += [f"tok/$ vs {settings.reference}", f"cost vs {settings.reference}"]
    if settings.upper:
        header.append(f"tok/$ vs {settings.upper}")
    header += ["min attainment", "scale actions"]
    rows = []
    for verdict in verdicts:
        item = verdict.aggregate
        row = [label(item), number(item.tokens_per_usd[0]), number(item.cost_usd[0], 2)]
        if settings.reference:
            row += [ratio(verdict.tokens_vs_reference), ratio(verdict.cost_vs_reference)]
        if settings.upper:
            row.append(ratio(verdict.tokens_vs_upper))
        rows.append([*row, number(item.worst_attainment, 3), f"{item.scale_actions:.1f}"])
    return table(header, rows, [False] + [True] * (len(header) - 1))


def missers_table(verdicts: Sequence[Verdict]) -> str:
    """The policies that miss a target: tokens/$, cost, and the worst miss (tenant, attainment/target, seed)."""
    header = ["policy", "goodput tok/$", "cost $", "missed in", "worst miss: tenant attainment/target", "seed"]
    rows = []
    for verdict in verdicts:
        item, miss = verdict.aggregate, verdict.miss
        assert miss is not None
        rows.append([label(item), number(item.tokens_per_usd[0]), number(item.cost_usd[0], 2),
                     f"{verdict.missed_episodes} of {item.seeds}", miss_text(miss), str(miss.seed)])
    return table(header, rows, [False, True, True, True, False, True])


def reference_notes(verdicts: Sequence[Verdict], settings: VerdictSettings) -> list[str]:
    """Why a ratio column reads n/a, or what it compares against when the reference itself misses."""
    by_name = {verdict.aggregate.policy: verdict for verdict in verdicts}
    notes = []
    for key, name in (("reference", settings.reference), ("upper", settings.upper)):
        if not name:
            continue
        if name not in by_name:
            notes.append(f"{name} did not run here (verdict.{key}): its ratio column says n/a.")
        elif not by_name[name].holds:
            notes.append(f"{name} (verdict.{key}) misses a target here: its ratios compare against a policy that "
                         "does not hold.")
    return notes


def scenario_section(scenario: str, verdicts: Sequence[Verdict], settings: VerdictSettings) -> list[str]:
    """A scenario's heading, its holders' table, its missers' table and notes."""
    seeds = max(verdict.aggregate.seeds for verdict in verdicts)
    lines = [f"## {scenario} ({seeds} seed{'s' if seeds != 1 else ''})", ""]
    holders = [verdict for verdict in verdicts if verdict.holds]
    missers = [verdict for verdict in verdicts if not verdict.holds]
    lines += [holders_table(holders, settings), ""] if holders else ["No policy held every target here.", ""]
    if missers:
        lines += ["Missed a target:", "", missers_table(missers), ""]
    notes = reference_notes(verdicts, settings)
    return lines + ([*notes, ""] if notes else [])


def overview_cell(verdict: Verdict | None) -> str:
    """``1.12× ✓`` (or ``51,234 tok/$ ✓`` without a reference), ``✗ tenant 0.800/0.90``, ``–`` when absent."""
    if verdict is None:
        return "–"
    if verdict.miss is not None:
        return f"✗ {miss_text(verdict.miss)}"
    if not math.isnan(verdict.tokens_vs_reference):
        return f"{ratio(verdict.tokens_vs_reference)} ✓"
    return f"{number(verdict.aggregate.tokens_per_usd[0])} tok/$ ✓"


def overview(by_scenario: dict[str, list[Verdict]]) -> str:
    """One row per policy (most scenarios held first), one column per scenario."""
    cells: dict[str, dict[str, Verdict]] = {}
    positions: dict[str, list[int]] = {}
    for scenario, verdicts in by_scenario.items():
        for position, verdict in enumerate(verdicts):
            cells.setdefault(label(verdict.aggregate), {})[scenario] = verdict
            positions.setdefault(label(verdict.aggregate), []).append(position)

    def order(name: str) -> tuple[int, float]:
        held = sum(verdict.holds for verdict in cells[name].values())
        return -held, sum(positions[name]) / len(positions[name])

    rows = [[name, *[overview_cell(cells[name].get(s)) for s in by_scenario]] for name in sorted(cells, key=order)]
    return table(["policy", *by_scenario], rows, [False] + [True] * len(by_scenario))


def verdict_markdown(rows: Sequence[dict[str, Any]], settings: VerdictSettings | None = None) -> str:
    """The overview and every scenario's verdict (what ``disaggpilot evaluate`` prints)."""
    settings = settings or VerdictSettings()
    by_scenario = verdicts_by_scenario(rows, settings)
    if not by_scenario:
        return "No episode finished.\n"
    held = (f"`1.12× ✓`: every tenant met its target in every episode, earning 1.12 × {settings.reference}'s "
            "goodput tokens/$ (tok/$ itself where it did not run);" if settings.reference else
            "`51,234 tok/$ ✓`: every tenant met its target in every episode, at that goodput tokens/$;")
    lines = ["## Verdict", "", held,
             "`✗ code 0.704/0.90`: missed; the worst tenant's attainment/target. Compare economics among ✓ only.",
             "", overview(by_scenario), ""]
    for scenario, verdicts in by_scenario.items():
        lines += scenario_section(scenario, verdicts, settings)
    if any(verdict.aggregate.sees_future for verdicts in by_scenario.values() for verdict in verdicts):
        lines.append(f"Marked {FUTURE_MARK}: sees the future (knows the episode in advance), a reference for what is "
                     "possible, not a policy one could deploy.")
    lines.append(f"Means over seeds; min attainment is the lowest tenant's in the worst episode. Terms: {METRICS_DOC}.")
    return "\n".join(lines) + "\n"


def summary_markdown(results: Sequence[EpisodeResult], plots: Sequence[Path] = (),
                     header: Sequence[str] = (), settings: VerdictSettings | None = None) -> str:
    """The whole ``summary.md``: a header, the verdict, the plots and any failed episodes."""
    rows = [result.row for result in results if result.error is None]
    lines = ["# Policy evaluation", "", *header, "", verdict_markdown(rows, settings)]
    if plots:
        lines += ["## Plots", "", *[f"- [{path.name}](plots/{path.name})" for path in plots], ""]
    failures = [result for result in results if result.error is not None]
    if failures:
        lines += ["## Failed episodes", ""]
        lines += [f"- {r.policy} on {r.scenario} seed {r.seed}: {_last_line(r.error)}" for r in failures]
    return "\n".join(lines).rstrip("\n") + "\n"


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
