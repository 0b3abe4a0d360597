"""Where one policy spends less than another, and where more: per episode, over time, and by load level.

Both policies of a comparison run the same scenario and seed, so they face the same requests (the harness
guarantees it) and their per-interval costs can be subtracted. Costs in US dollars; a negative delta means
the compared policy (``learned``) spent less than the reference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from disaggpilot.agent.analysis.tables import Row, done, episode, tenants_of
from disaggpilot.agent.evaluation import EpisodeResult
from disaggpilot.env.errors import require


def _roles(row: Row) -> list[str]:
    return [key.split("/", 1)[1] for key in row if key.startswith("mean_replicas/")]


def _interval_costs(result: EpisodeResult) -> list[float]:
    return [float(step["cost_usd"]) for step in result.timeline]


def spend_rows(results: Sequence[EpisodeResult], learned: str, reference: str) -> list[Row]:
    """One row per (scenario, seed) both policies finished: cost, tokens per USD and lowest attainment of
    each, the cost delta (USD and percent of the reference), the difference in mean billed replicas per
    pool, and the shares of intervals where ``learned`` spent less and more."""
    rows = []
    for mine in (r for r in done(results) if r.policy == learned):
        theirs = next((r for r in done(results) if (r.policy, r.scenario, r.seed) == (reference, mine.scenario,
                                                                                       mine.seed)), None)
        if theirs is not None:
            rows.append(_spend_row(mine, theirs))
    return rows


def _spend_row(mine: EpisodeResult, theirs: EpisodeResult) -> Row:
    a, b = mine.row, theirs.row
    deltas = [x - y for x, y in zip(_interval_costs(mine), _interval_costs(theirs), strict=True)]
    row: Row = {"scenario": mine.scenario, "seed": mine.seed, "reference": theirs.policy,
                "cost_usd": a["cost_usd"], "reference_cost_usd": b["cost_usd"],
                "delta_usd": a["cost_usd"] - b["cost_usd"],
                "delta_pct": 100.0 * (a["cost_usd"] - b["cost_usd"]) / b["cost_usd"] if b["cost_usd"] else math.nan,
                "tokens_per_usd": a["goodput_tokens_per_usd"], "reference_tokens_per_usd": b["goodput_tokens_per_usd"],
                "min_attainment": a["min_attainment"], "reference_min_attainment": b["min_attainment"]}
    for role in _roles(a):
        row[f"replica_delta/{role}"] = a[f"mean_replicas/{role}"] - b.get(f"mean_replicas/{role}", math.nan)
    row["share_cheaper"] = sum(d < 0 for d in deltas) / len(deltas) if deltas else math.nan
    row["share_dearer"] = sum(d > 0 for d in deltas) / len(deltas) if deltas else math.nan
    return row


def load_of(step: Row) -> float:
    """Total arrival rate of an interval over every tenant (requests per second)."""
    return sum(float(value) for key, value in step.items() if key.startswith("arrival_rps/"))


def cost_gap(results: Sequence[EpisodeResult], learned: str, reference: str, scenario: str,
             seed: int) -> dict[str, list[float]]:
    """Per interval of one episode: ``time_min``, the ``load_rps`` both faced, the cost ``delta_usd``
    (learned − reference) and its running sum ``cumulative_usd``, and per pool ``replica_delta/<role>``
    (replicas ready + starting, learned − reference)."""
    mine, theirs = episode(results, learned, scenario, seed), episode(results, reference, scenario, seed)
    deltas = [x - y for x, y in zip(_interval_costs(mine), _interval_costs(theirs), strict=True)]
    gap: dict[str, list[float]] = {"time_min": [float(s["time_s"]) / 60.0 for s in mine.timeline],
                                   "load_rps": [load_of(s) for s in theirs.timeline], "delta_usd": deltas,
                                   "cumulative_usd": [sum(deltas[: i + 1]) for i in range(len(deltas))]}
    for role in _roles(mine.row):
        gap[f"replica_delta/{role}"] = [_asked(a, role) - _asked(b, role)
                                        for a, b in zip(mine.timeline, theirs.timeline, strict=True)]
    return gap


def _asked(step: Row, role: str) -> float:
    return float(step.get(f"replicas_ready/{role}", 0)) + float(step.get(f"replicas_starting/{role}", 0))


def _min_attainment(step: Row) -> float:
    values = [float(step[f"attainment/{t}"]) for t in tenants_of(step)]
    finite = [v for v in values if not math.isnan(v)]
    return min(finite) if finite else math.nan


def spend_by_load(results: Sequence[EpisodeResult], learned: str, reference: str, scenario: str, seed: int,
                  bins: int = 3) -> list[Row]:
    """The episode's intervals split into ``bins`` equal-count load bands (lowest first): per band the load
    range (requests per second), the mean cost delta per interval (USD, learned − reference) and each
    policy's mean lowest-tenant attainment per interval.

    Raises:
        ConfigError: ``bins`` < 1.
    """
    require(bins >= 1, "bins", bins, "use at least one load band")
    mine, theirs = episode(results, learned, scenario, seed), episode(results, reference, scenario, seed)
    steps = sorted(zip(mine.timeline, theirs.timeline, strict=True), key=lambda pair: load_of(pair[1]))
    bands = [steps[len(steps) * i // bins: len(steps) * (i + 1) // bins] for i in range(bins)]
    return [_band_row(band) for band in bands if band]


def _band_row(band: Sequence[tuple[Row, Row]]) -> dict[str, Any]:
    loads = [load_of(theirs) for _, theirs in band]
    return {"load_min_rps": min(loads), "load_max_rps": max(loads), "intervals": len(band),
            "mean_delta_usd": statistics.fmean(float(a["cost_usd"]) - float(b["cost_usd"]) for a, b in band),
            "min_attainment": _nanmean([_min_attainment(a) for a, _ in band]),
            "reference_min_attainment": _nanmean([_min_attainment(b) for _, b in band])}


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan
