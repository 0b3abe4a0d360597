"""Record the reward-relevant numbers of two diurnal episodes to ``tests/env/data/reward_ranking_diurnal.json``.

The fixture behind ``tests/env/test_reward_ranking.py``: ``headroom_planner`` at its defaults and the same sizer
at (window 10 intervals, prefill utilisation 0.6, decode 0.75), each for one full diurnal episode (seed 0,
7,200 s, the default environment), played by the evaluation harness. Per interval it keeps what either reward
form reads: each tenant's met and missed requests and goodput prompt/output tokens, the interval's cost, and the
replicas and knobs the action changed. Rerun it (about a minute or two) after a simulator change:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/reward_ranking_fixture.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.evaluation.episode import EpisodeTask, play
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.env.cluster_env import DisaggClusterEnv
from disaggpilot.env.metrics import GW_GOODPUT_GENERATION_TOKENS, GW_GOODPUT_PROMPT_TOKENS, GW_MET, GW_MISSED
from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.summary import summarize

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "env" / "data" / "reward_ranking_diurnal.json"
POLICIES: dict[str, dict[str, Any]] = {
    "headroom_planner_defaults": {},
    "sizer_w10_p060_d075": {"demand_window_intervals": 10, "prefill_utilization": 0.6, "decode_utilization": 0.75},
}
COUNTERS = {"met": GW_MET, "missed": GW_MISSED, "goodput_prompt": GW_GOODPUT_PROMPT_TOKENS,
            "goodput_output": GW_GOODPUT_GENERATION_TOKENS}


def record(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """One episode of ``headroom_planner`` with ``params``: its intervals and its whole-run summary."""
    scenario = load_scenario("diurnal")
    task = EpisodeTask(index=0, policy=PolicySpec(name=name, kind="headroom_planner"), scenario=scenario, seed=0)
    intervals: list[dict[str, Any]] = []

    def keep(env: DisaggClusterEnv, _: np.ndarray, __: float, info: dict[str, Any]) -> None:
        shot = env.history[-1]
        intervals.append({
            "start_s": shot.start_s, "end_s": shot.end_s, "cost_usd": shot.cost_usd,
            "replicas_changed": int(info["action/replicas_changed"]),
            "knobs_changed": int(info["action/knobs_changed"]),
            "tenants": {t: {key: shot.tenants[t].counters[c] for key, c in COUNTERS.items()} for t in shot.tenants}})

    trace = play(make_baseline("headroom_planner", **params), task, on_step=keep)
    summary = summarize(trace.snapshots, scenario.tenants)
    return {"settings": params, "goodput_tokens_per_usd": summary.goodput_tokens_per_usd,
            "attainment": {row.tenant: row.attainment for row in summary.tenants}, "intervals": intervals}


def main() -> None:
    episodes = {name: record(name, params) for name, params in POLICIES.items()}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps({"scenario": "diurnal", "seed": 0, "made_by": "benchmarks/reward_ranking_fixture.py",
                                   "episodes": episodes}, indent=None, separators=(",", ":")) + "\n")
    for name, episode in episodes.items():
        print(f"{name}: {episode['goodput_tokens_per_usd']:.0f} tokens/$, attainment {episode['attainment']}")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
