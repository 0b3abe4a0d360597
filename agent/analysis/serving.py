"""Disaggregated against aggregated serving, per workload: when is disaggregation worth it?

Run a :func:`agent.analysis.whatif.sweep` with ``axes={"serving": ["aggregated"]}`` (the base scenarios are
the disaggregated side), then read it with :func:`serving_rows` and :func:`serving_verdicts`. Only policies
that can drive both kinds of cluster give both sides (``static``, ``static_oracle``, ``threshold``,
``saturation``; the SLA planner and a bundle trained on prefill/decode pools cannot drive a single pool).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from disaggpilot.agent.analysis.tables import Row
from disaggpilot.agent.analysis.whatif import BASE, SweepResult

SIDES = {BASE: "disaggregated", "serving": "aggregated"}
"""Sweep axis → serving mode it stands for."""
COMPARED = ("tokens_per_usd", "min_attainment", "cost_usd", "meets_slo")
"""Figures compared for each side."""


def serving_rows(result: SweepResult) -> list[Row]:
    """One row per (base scenario, policy) evaluated in both modes: ``disaggregated_<figure>`` and
    ``aggregated_<figure>`` for tokens per USD, lowest attainment, cost (USD) and ``meets_slo``, and
    ``tokens_per_usd_ratio`` (disaggregated / aggregated)."""
    sides: dict[tuple[str, str], Row] = {}
    for row in result.rows():
        mode = SIDES.get(row["axis"])
        if mode is None or (mode == "aggregated" and row["value"] != "aggregated"):
            continue
        cell = sides.setdefault((row["base_scenario"], row["policy"]),
                                {"scenario": row["base_scenario"], "policy": row["policy"]})
        cell.update({f"{mode}_{key}": row[key] for key in COMPARED})
    rows = [cell for cell in sides.values() if "disaggregated_meets_slo" in cell and "aggregated_meets_slo" in cell]
    for cell in rows:
        aggregated = cell["aggregated_tokens_per_usd"]
        cell["tokens_per_usd_ratio"] = cell["disaggregated_tokens_per_usd"] / aggregated if aggregated else math.nan
    return rows


def best(rows: Sequence[Row], mode: str) -> Row | None:
    """The best policy of one mode: the most tokens per USD among those meeting every target, else the
    highest lowest-attainment (None without rows)."""
    meeting = [row for row in rows if row[f"{mode}_meets_slo"]]
    if meeting:
        return max(meeting, key=lambda row: row[f"{mode}_tokens_per_usd"])
    return max(rows, key=lambda row: row[f"{mode}_min_attainment"], default=None)


def serving_verdicts(rows: Sequence[Row]) -> list[Row]:
    """Per scenario: each mode's best policy and figures, ``worth_it`` (disaggregation wins) and why.

    Disaggregation is worth it when only it meets every target, or both do and it earns more tokens per
    USD, or neither does and its lowest attainment is higher (docs/metrics.md: economics only at equal SLOs).
    """
    verdicts = []
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        mine = [row for row in rows if row["scenario"] == scenario]
        split, joint = best(mine, "disaggregated"), best(mine, "aggregated")
        assert split is not None and joint is not None
        worth_it, reason = _judge(split, joint)
        verdicts.append({"scenario": scenario, "worth_it": worth_it, "reason": reason,
                         "disaggregated_policy": split["policy"], "aggregated_policy": joint["policy"],
                         **{f"disaggregated_{k}": split[f"disaggregated_{k}"] for k in COMPARED},
                         **{f"aggregated_{k}": joint[f"aggregated_{k}"] for k in COMPARED}})
    return verdicts


def _judge(split: Row, joint: Row) -> tuple[bool, str]:
    meets_split, meets_joint = split["disaggregated_meets_slo"], joint["aggregated_meets_slo"]
    if meets_split != meets_joint:
        return bool(meets_split), f"only {'disaggregated' if meets_split else 'aggregated'} serving meets every target"
    if meets_split:
        gain = split["disaggregated_tokens_per_usd"] / joint["aggregated_tokens_per_usd"] - 1.0
        return gain > 0, f"both meet every target; disaggregated earns {gain:+.0%} tokens per USD"
    gap = split["disaggregated_min_attainment"] - joint["aggregated_min_attainment"]
    return gap > 0, f"neither meets every target; disaggregated lowest attainment {gap:+.3f}"
