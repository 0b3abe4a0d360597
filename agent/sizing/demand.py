"""How the headroom sizer reads one number of replicas out of a window of per-interval needs.

Each interval of the window gives, per pool, the replicas its measured demand needed at full utilisation
(``need``) and how many requests arrived in it (``weight``). Two statistics turn the window into a plan:

``peak``
    The window's largest need: nothing in the window would have been short. One interval whose mean prompt a
    few huge prompts inflated sets the plan for the whole window, which over-provisions heavy-tailed prompts.
``quantile``
    The request-weighted ``q``-quantile of the needs: the smallest need that covered the intervals in which at
    least ``q`` of the window's requests arrived. Requests, not tokens, weigh each interval because attainment
    is counted per request: a few huge prompts add most of an interval's tokens but few of its requests, so
    they no longer decide the plan (weighting by tokens would hand them the plan again), while a burst of
    arrivals, which is what the SLO is about, carries its weight in requests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from disaggpilot.env.errors import require

DEMAND_STATISTICS = ("peak", "quantile")


def validate_statistic(statistic: str, quantile: float, prefix: str) -> None:
    """Raise ``ConfigError`` for an unknown statistic or a quantile outside (0, 1] (keys under ``prefix``)."""
    require(statistic in DEMAND_STATISTICS, f"{prefix}.demand_statistic", statistic,
            f"use one of {DEMAND_STATISTICS}")
    require(0 < quantile <= 1, f"{prefix}.demand_quantile", quantile, "use a fraction in (0, 1]")


def weighted_quantile(values: Sequence[float], weights: Sequence[float], quantile: float) -> float:
    """The smallest value whose cumulative weight (values sorted ascending) reaches ``quantile`` of the total.

    Args:
        values: one need per interval (replicas).
        weights: each interval's weight (requests); all zero counts every interval alike.
        quantile: the fraction of the total weight to cover, in (0, 1].
    """
    order = np.argsort(np.asarray(values, dtype=np.float64), kind="stable")
    ranked = np.asarray(weights, dtype=np.float64)[order]
    if ranked.sum() <= 0:
        ranked = np.ones_like(ranked)
    cumulative = np.cumsum(ranked) / ranked.sum()
    position = int(np.searchsorted(cumulative, quantile - 1e-9, side="left"))
    return float(np.asarray(values, dtype=np.float64)[order][min(position, len(order) - 1)])

