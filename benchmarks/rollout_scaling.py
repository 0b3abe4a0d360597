"""Rollout scaling: environment steps per wall-second with 1, 2 and 4 workers, ``SubprocVecEnv`` against
``RayVecEnv`` (a local Ray), one environment per worker, and the overhead of Ray at equal workers.

Each vector step does what MaskablePPO's rollout does: ask every environment for its action masks, then
step them all with a random masked action. The in-process rate of one environment (``DummyVecEnv``) is the
same-run reference: it gives the cost of one environment step, and the difference to one Ray worker gives
Ray's per-step round trip, from which the expected cluster throughput is projected.

Usage: ``python benchmarks/rollout_scaling.py [--workers 1 2 4] [--steps 200] [--scenario steady]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from disaggpilot.agent.ray_cluster import RayConfig
from disaggpilot.agent.training.ray_vec_env import RayVecEnv
from disaggpilot.agent.training.runner import make_env_factory
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import load_scenario

FLOOR = 0.75
"""Ray's throughput at 2 workers must be at least this share of subprocesses' (within 25%)."""
WARMUP_STEPS = 5
"""Vector steps run before timing (workers started, imports done, caches warm)."""


def masked_actions(masks: np.ndarray, nvec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random allowed action per environment from the stacked masks."""
    bounds = np.cumsum(nvec)[:-1]
    return np.array([[rng.choice(np.flatnonzero(part)) for part in np.split(row, bounds)] for row in masks])


def steps_per_second(vec: VecEnv, steps: int) -> float:
    """Environment steps per wall-second over ``steps`` vector steps, after a warm-up."""
    rng, nvec = np.random.default_rng(0), np.asarray(getattr(vec.action_space, "nvec"))  # noqa: B009  (MultiDiscrete)
    vec.seed(0)
    vec.reset()
    started = 0.0
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        vec.step(masked_actions(np.stack(vec.env_method("action_masks")), nvec, rng))
    rate = steps * vec.num_envs / (time.perf_counter() - started)
    vec.close()
    return rate


def builders(scenario: str) -> dict[str, Callable[[int], VecEnv]]:
    """How each kind builds ``n`` environments (one per worker)."""
    def factories(n: int) -> list[Any]:
        return [make_env_factory([load_scenario(scenario)], EnvConfig(), RewardConfig(), rank) for rank in range(n)]
    return {"in-process": lambda n: DummyVecEnv(factories(n)),
            "subproc": lambda n: SubprocVecEnv(factories(n)),
            "ray": lambda n: RayVecEnv(factories(n), RayConfig(cpus_per_worker=1.0, timeout_s=600.0))}


def project(env_step_s: float, overhead_s: float) -> list[str]:
    """Expected steps per second on a cluster: N actors of k environments, one vector step = k env steps in
    each actor (in parallel) + one Ray round trip; the driver's own time is in the round trip as measured."""
    lines = []
    for actors, per_actor in ((16, 1), (16, 4), (64, 4), (256, 4)):
        rate = actors * per_actor / (per_actor * env_step_s + overhead_s)
        lines.append(f"  {actors:>4} actors x {per_actor} envs: ~{rate:,.0f} steps/s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts to measure")
    parser.add_argument("--steps", type=int, default=200, help="timed vector steps per measurement")
    parser.add_argument("--scenario", default="steady", help="scenario name in configs/scenario/")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    build = builders(args.scenario)
    reference = steps_per_second(build["in-process"](1), args.steps)
    rates = {(kind, n): steps_per_second(build[kind](n), args.steps)
             for n in args.workers for kind in ("subproc", "ray")}
    ray.shutdown()
    print(f"scenario {args.scenario}, {args.steps} timed vector steps (masks + step), {os.cpu_count()} CPUs here")
    print(f"one environment in-process: {reference:,.0f} steps/s (the same-run reference)")
    print("workers | subproc steps/s | ray steps/s | ray / subproc")
    for n in args.workers:
        sub, on_ray = rates[("subproc", n)], rates[("ray", n)]
        print(f"{n:>7} | {sub:>15,.0f} | {on_ray:>11,.0f} | {on_ray / sub:>12.2f}")
    if 2 in args.workers:
        ratio = rates[("ray", 2)] / rates[("subproc", 2)]
        verdict = "PASS" if ratio >= FLOOR else "FAIL"
        print(f"floor at 2 workers: ray >= {FLOOR:.2f} x subproc -> {ratio:.2f}: {verdict}")
    if 1 not in args.workers:
        return
    env_step_s = 1.0 / reference
    overhead_s = max(0.0, 1.0 / rates[("ray", 1)] - env_step_s)
    print(f"per vector step: environment {env_step_s * 1e3:.2f} ms, Ray round trip {overhead_s * 1e3:.2f} ms")
    print("expected on a cluster with a core per actor (environment + round trip, driver not saturated):")
    print("\n".join(project(env_step_s, overhead_s)))


if __name__ == "__main__":
    main()
