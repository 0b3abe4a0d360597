"""Two levers a reactive controller has on steady, on validation seeds (2026-12-07-last-floors.md, §1-2).

A variant is ``[low, high, spend_above, save_below]`` or ``[prefill, decode, token_budget, batch_cap]``::

    python steady_levers.py pace '[[[3, 1], [4, 1], 0.02, 0.015]]' '[1000, 1001, 1002, 1003, 1004]'
    python steady_levers.py knobs '[[4, 1, 4096, 256]]'

``pace`` runs ``low`` while every tenant's attainment so far in the episode is above its target by more than
``spend_above``, and ``high`` once one falls below ``save_below`` (hysteresis between the two). ``knobs`` holds
fixed replicas with a prefill token budget and a decode batch cap. Prints pooled tokens/$ and worst margins.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from disaggpilot.agent.evaluation.episode import EpisodeTask, play
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.evaluation.records import results_row
from disaggpilot.agent.evaluation.scenarios import resolve_scenario
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.metrics import GW_MET, GW_MISSED, MetricsSnapshot


class Pacer:
    """``low`` replicas while the attainment so far leaves room, ``high`` otherwise."""

    name = "pacer"

    def __init__(self, low: Sequence[int], high: Sequence[int], spend_above: float, save_below: float) -> None:
        self.low, self.high, self.spend_above, self.save_below = low, high, spend_above, save_below

    def reset(self, context: PolicyContext) -> None:
        self.targets = {t.name: t.attainment_target for t in context.scenario.tenants}
        self.counts = {name: [0.0, 0.0] for name in self.targets}
        self.use_low = False

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        if len(history) > 1:
            for name, tenant in history[-1].tenants.items():
                self.counts[name][0] += tenant.counters[GW_MET]
                self.counts[name][1] += tenant.counters[GW_MISSED]
            margin = min(met / max(met + missed, 1.0) - self.targets[name]
                         for name, (met, missed) in self.counts.items())
            self.use_low = margin > self.spend_above or (self.use_low and margin >= self.save_below)
        prefill, decode = self.low if self.use_low else self.high
        return ClusterAction.replicas(prefill=prefill, decode=decode)


class FixedWithKnobs:
    """Fixed replica counts, prefill token budget and decode batch cap."""

    name = "fixed"

    def __init__(self, prefill: int, decode: int, token_budget: int, batch_cap: int) -> None:
        self.action = ClusterAction({"prefill": PoolTarget(prefill, token_budget, None),
                                     "decode": PoolTarget(decode, None, batch_cap)})

    def reset(self, context: PolicyContext) -> None:
        pass

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        return self.action


def episode(job: tuple[str, int, list[Any]]) -> dict[str, float]:
    lever, seed, variant = job
    policy = Pacer(*variant) if lever == "pace" else FixedWithKnobs(*variant)
    scenario = resolve_scenario("steady")
    row = results_row(lever, "probe", scenario.name, seed, play(policy, EpisodeTask(0, PolicySpec(lever, "probe"),
                                                                                     scenario, seed)))
    margins = [row[k] - row["target/" + k.split("/", 1)[1]] for k in row if k.startswith("attainment/")]
    return {"goodput": row["goodput_tokens"], "cost": row["cost_usd"], "margin": min(margins)}


def main() -> None:
    lever, variants = sys.argv[1], json.loads(sys.argv[2])
    seeds = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [1000, 1001, 1002, 1003, 1004]
    with ProcessPoolExecutor(2) as pool:
        for variant in variants:
            print(summary(variant, list(pool.map(episode, [(lever, seed, variant) for seed in seeds]))), flush=True)


def summary(variant: list[Any], rows: list[dict[str, float]]) -> str:
    """Pooled tokens/$ (total goodput over total cost), the worst margin and each seed's."""
    pooled = sum(r["goodput"] for r in rows) / sum(r["cost"] for r in rows)
    worst, margins = min(r["margin"] for r in rows), " ".join(f"{r['margin']:+.4f}" for r in rows)
    return f"{json.dumps(variant):36s} {pooled:10,.0f} tok/$  worst {worst:+.4f}  per seed {margins}"


if __name__ == "__main__":
    main()
