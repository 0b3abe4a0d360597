"""Compare two evaluations' rankings: which policies moved when the simulator (or anything else) changed.

Each side is one or more ``results.csv`` files of ``disaggpilot evaluate`` (rows of the same policy, scenario and
seed in a later file replace an earlier one's). Per scenario, policies are ranked as the verdict ranks them:
those that held every tenant's target in every episode first, by pooled goodput tokens/$ (goodput over cost,
summed over seeds), then the others by their worst attainment margin. Usage::

    python scripts/compare_rankings.py --before A/results.csv B/results.csv --after C/results.csv

It prints a Markdown table per scenario: rank, tokens/$ as a ratio to ``static_tuned`` and held or not, before
and after, and marks the policies whose place among the policies of both sides changed.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REFERENCE = "static_tuned"


@dataclass
class Standing:
    """One policy on one scenario, pooled over its seeds."""

    policy: str
    tokens_per_usd: float
    held: bool
    worst_margin: float
    episodes: int


def load(paths: list[Path]) -> dict[tuple[str, str, str], dict[str, str]]:
    """Rows by (policy, scenario, seed); a later file's row replaces an earlier one's."""
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for path in paths:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                rows[(row["policy"], row["scenario"], row["seed"])] = row
    return rows


def margin(row: dict[str, str]) -> float:
    """The worst tenant's attainment minus its target in this episode."""
    margins = [float(value) - float(row["target/" + key.split("/", 1)[1]])
               for key, value in row.items() if key.startswith("attainment/") and value]
    return min(margins)


def standings(rows: dict[tuple[str, str, str], dict[str, str]]) -> dict[str, list[Standing]]:
    """Per scenario, every policy's pooled standing, ranked as the verdict ranks them."""
    grouped: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for (policy, scenario, _), row in rows.items():
        grouped[(scenario, policy)].append(row)
    ranked: dict[str, list[Standing]] = defaultdict(list)
    for (scenario, policy), episodes in grouped.items():
        goodput = sum(float(r["goodput_tokens"]) for r in episodes)
        cost = sum(float(r["cost_usd"]) for r in episodes)
        worst = min(margin(r) for r in episodes)
        ranked[scenario].append(Standing(policy, goodput / cost, worst >= 0, worst, len(episodes)))
    for scenario in ranked:
        ranked[scenario].sort(key=lambda s: (not s.held, -s.tokens_per_usd if s.held else -s.worst_margin))
    return ranked


def cell(standing: Standing | None, reference: float | None) -> str:
    if standing is None:
        return "—"
    ratio = f"{standing.tokens_per_usd / reference:.2f}×" if reference else f"{standing.tokens_per_usd:,.0f}"
    return f"{ratio} {'✓' if standing.held else f'✗ {standing.worst_margin:+.3f}'}"


def table(scenario: str, before: list[Standing], after: list[Standing]) -> list[str]:
    """The Markdown lines comparing one scenario's two rankings."""
    old = {s.policy: (rank, s) for rank, s in enumerate(before, 1)}
    new = {s.policy: (rank, s) for rank, s in enumerate(after, 1)}
    common = set(old) & set(new)  # a policy moved when its place among the policies on both sides changed
    place_before = {s.policy: i for i, s in enumerate(s for s in before if s.policy in common)}
    place_after = {s.policy: i for i, s in enumerate(s for s in after if s.policy in common)}
    reference_before = old.get(REFERENCE, (0, None))[1]
    reference_after = new.get(REFERENCE, (0, None))[1]
    lines = [f"### {scenario}", "", "| policy | rank before | before | rank after | after |", "|---|---:|---|---:|---|"]
    for policy in [s.policy for s in after] + [p for p in old if p not in new]:
        rank_before, standing_before = old.get(policy, (None, None))
        rank_after, standing_after = new.get(policy, (None, None))
        moved = " **(moved)**" if policy in common and place_before[policy] != place_after[policy] else ""
        lines.append(f"| {policy}{moved} | {rank_before or '—'} | "
                     f"{cell(standing_before, reference_before.tokens_per_usd if reference_before else None)} | "
                     f"{rank_after or '—'} | "
                     f"{cell(standing_after, reference_after.tokens_per_usd if reference_after else None)} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", nargs="+", type=Path, required=True, help="results.csv files (oldest first)")
    parser.add_argument("--after", nargs="+", type=Path, required=True, help="results.csv files (oldest first)")
    args = parser.parse_args()
    before, after = standings(load(args.before)), standings(load(args.after))
    for scenario in [s for s in after if s in before] + [s for s in after if s not in before]:
        print("\n".join(table(scenario, before.get(scenario, []), after[scenario])))


if __name__ == "__main__":
    main()
