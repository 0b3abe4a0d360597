"""A controller restarted mid-period, in the simulator (2026-12-08-restart.md).

Runs the shipped generalist on a scenario's evaluation seeds four ways: never restarted; restarted at
``restart_s`` with its observation memory starting afresh (what the daemon did before it replayed the period);
restarted with the period so far replayed (``Observer.join_period(elapsed, history)``); and replayed with the
policy's demand window refilled from the replay as well (``warm_up``, what the daemon does now). A restart
empties the policy's own state (the sizer's demand window) and the history it is handed::

    python docs/experiments/2026-12-08-restart/restart.py flash_crowd 3900
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from disaggpilot.agent.evaluation.episode import EpisodeTask, policy_context
from disaggpilot.agent.evaluation.policies import PolicySpec, build_policy
from disaggpilot.agent.evaluation.records import EpisodeTrace, StepRecord, results_row
from disaggpilot.agent.evaluation.scenarios import resolve_scenario
from disaggpilot.agent.policy import environment_for
from disaggpilot.env.cluster_env import DisaggClusterEnv

SEEDS = [100, 101, 102, 103, 104]
BUNDLE = "policies/disaggpilot-generalist-v6"
MODES = ("not restarted", "restarted afresh", "restarted, period replayed", "replayed, policy warmed up")


def episode(job: tuple[str, int, str, float]) -> dict[str, Any]:
    """One episode; returns its results row."""
    scenario_name, seed, mode, restart_s = job
    spec = PolicySpec("generalist", "ppo", {"bundle": BUNDLE})
    policy = build_policy(spec.name, spec)
    task = EpisodeTask(0, spec, resolve_scenario(scenario_name), seed)
    env = DisaggClusterEnv(task.scenario, config=environment_for(policy, task.env), reward=task.reward)
    observation, _ = env.reset(seed=seed)
    policy.reset(policy_context(env, spec))
    trace, since, done = EpisodeTrace(world=env.world, roles=env.codec.roles), 0, False
    while not done:
        if mode != MODES[0] and abs(env.elapsed_s - restart_s) < 1e-6:
            observation, since = restart(env, policy, spec, replay=mode in MODES[2:], warm_up=mode == MODES[3])
        observation, reward, _, done, info = env.step_targets(policy.act(observation, env.history[since:]))
        trace.snapshots.append(env.history[-1])
        trace.steps.append(StepRecord(reward=reward, scaled=int(info["action/replicas_changed"]) > 0))
    return results_row(mode, "probe", scenario_name, seed, trace)


def restart(env: DisaggClusterEnv, policy: Any, spec: PolicySpec, replay: bool, warm_up: bool) -> tuple[Any, int]:
    """The policy starts over (its sizer's window refilled from the replay when ``warm_up``) and the observer
    joins the period: with the intervals before the last one replayed (or none), then the last interval observed
    as the daemon's first. Returns the observation and where the restarted controller's own history starts."""
    policy.reset(policy_context(env, spec))
    if replay and warm_up:  # the daemon hands the policy the replayed intervals, the last one included
        policy.warm_up(env.history[1:][-policy.warm_up_intervals:])
    interval = env.config.interval_s
    history = env.history[1:-1] if replay else []
    env.observer.join_period(env.elapsed_s - interval, history)
    return env.observer.build(env.history[-1], env.levels), len(env.history) - 1


def main() -> None:
    scenario_name, restart_s = sys.argv[1], float(sys.argv[2])
    with ProcessPoolExecutor(2) as pool:
        for mode in MODES:
            rows = list(pool.map(episode, [(scenario_name, seed, mode, restart_s) for seed in SEEDS]))
            pooled = sum(r["goodput_tokens"] for r in rows) / sum(r["cost_usd"] for r in rows)
            margins = [min(r[k] - r["target/" + k.split("/", 1)[1]] for k in r if k.startswith("attainment/"))
                       for r in rows]
            held = sum(m >= 0 for m in margins)
            print(f"{scenario_name} restart at {restart_s:.0f} s, {mode:28s} {pooled:10,.0f} tok/$  held {held}/5  "
                  f"worst margin {min(margins):+.4f}  per seed {' '.join(f'{m:+.4f}' for m in margins)}", flush=True)


if __name__ == "__main__":
    main()
