"""What a floor held against a burst costs outside the burst: the headroom sizer at one setting until a fixed
time, another from then on, on validation seeds (a hindsight probe: the switch times are given, not detected).

Prints, per variant, the pooled tokens/$ and each seed's worst tenant margin (attainment minus target)::

    python scripts/probe_after_burst.py flash_crowd \\
        '[["kept 4+3", [0.75, 0.9, 4, 3], [0.75, 0.9, 4, 3], 1e9],
          ["4+1 from 3,900 s", [0.75, 0.9, 4, 3], [0.75, 0.9, 4, 1], 3900]]'

A variant may instead give a schedule, ``[label, [[from_s, setting], ...]]``: each setting from its time on,
the first from 0 s (a floor raised ahead of a burst whose time is known)::

    python scripts/probe_after_burst.py flash_crowd \
        '[["4+1, 4+3 from 2,700 s, 4+1 from 3,900 s",
           [[0, [0.75, 0.9, 4, 1]], [2700, [0.75, 0.9, 4, 3]], [3900, [0.75, 0.9, 4, 1]]]]]'

A setting is (prefill level, decode level, prefill floor, decode floor) with a 10-interval window and the
window's peak. A third argument replays a trace for one tenant, as ``disaggpilot evaluate``'s ``trace.*``
(JSON of :class:`TraceOverride`'s fields), e.g. ``'{"path": "data/traces/azure2023_conv.csv", "end_s": 1680}'``.
Every run is reproducible: the simulator is seeded per episode.
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
from disaggpilot.agent.evaluation.scenarios import TraceOverride, resolve_scenario, with_trace
from disaggpilot.agent.headroom import HeadroomSettings, HeadroomSizer
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig

SEEDS = [1000, 1001, 1002, 1003, 1004]
SETTINGS = HeadroomSettings(prefill_utilization_levels=[0.5, 0.6, 0.75, 0.85, 1.0],
                            decode_utilization_levels=[0.6, 0.75, 0.9, 1.0], demand_window_intervals=10,
                            prefill_floor_choices=[0, 3, 4, 5, 6, 7, 8], decode_floor_choices=[0, 1, 2, 3, 4])
Setting = Sequence[float]


def indices(setting: Setting) -> np.ndarray:
    """The sizer's action indices for (prefill level, decode level, prefill floor, decode floor)."""
    choices: dict[str, list[float]] = {
        "prefill level": list(SETTINGS.prefill_utilization_levels),
        "decode level": list(SETTINGS.decode_utilization_levels),
        "prefill floor": [float(n) for n in SETTINGS.prefill_floor_choices],
        "decode floor": [float(n) for n in SETTINGS.decode_floor_choices]}
    pairs = list(zip(setting, choices.values(), strict=False))
    if len(setting) != len(choices) or any(value not in allowed for value, allowed in pairs):
        raise SystemExit(f"setting {list(setting)} is not one of this probe's: give (prefill level, decode level, "
                         f"prefill floor, decode floor) from {choices}")
    return np.array([allowed.index(value) for value, allowed in pairs])


Schedule = Sequence[tuple[float, Setting]]


class SwitchAt:
    """The sizer at each setting of ``schedule`` from its start time on (the first from 0 s)."""

    name = "switch"

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = [(float(from_s), indices(setting)) for from_s, setting in schedule]
        self.sizer = HeadroomSizer(SETTINGS)

    def reset(self, context: PolicyContext) -> None:
        self.sizer.reset(context.scenario, context.interval_s)

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        if len(history) > 1:
            self.sizer.observe(history[-1])
        now = history[-1].end_s
        current = [setting for from_s, setting in self.schedule if from_s <= now]
        return self.sizer.targets(current[-1] if current else self.schedule[0][1], history[-1])


def schedule_of(variant: Sequence[Any]) -> Schedule:
    """``[label, before, after, at_s]`` or ``[label, [[from_s, setting], ...]]`` as a schedule."""
    if len(variant) == 4:
        _, before, after, at_s = variant
        return [(0.0, before), (float(at_s), after)]
    return [(float(from_s), setting) for from_s, setting in variant[1]]


def episode(job: tuple[ScenarioConfig, int, Schedule]) -> dict[str, Any]:
    """Goodput, cost and every tenant's margin of one episode."""
    scenario, seed, schedule = job
    task = EpisodeTask(0, PolicySpec("switch", "probe"), scenario, seed)
    row = results_row("switch", "probe", scenario.name, seed, play(SwitchAt(schedule), task))
    margins = [row[key] - row["target/" + key.split("/", 1)[1]] for key in row if key.startswith("attainment/")]
    return {"goodput": row["goodput_tokens"], "cost": row["cost_usd"], "margin": min(margins)}


def main() -> None:
    variants = json.loads(sys.argv[2])
    trace = TraceOverride(**json.loads(sys.argv[3])) if len(sys.argv) > 3 else TraceOverride()
    scenario = with_trace(resolve_scenario(sys.argv[1]), trace)
    with ProcessPoolExecutor(2) as pool:
        for variant in variants:
            label, schedule = variant[0], schedule_of(variant)
            rows = list(pool.map(episode, [(scenario, seed, schedule) for seed in SEEDS]))
            pooled = sum(r["goodput"] for r in rows) / sum(r["cost"] for r in rows)
            margins = " ".join(f"{r['margin']:+.4f}" for r in rows)
            print(f"{label:28s} {pooled:10,.0f} tok/$  worst margin {min(r['margin'] for r in rows):+.4f}"
                  f"  per seed {margins}", flush=True)


if __name__ == "__main__":
    main()
