"""Environment speed: steps per wall-second on the default training scenario, one core, and the share of a
step's time spent outside the simulator (observation, reward, action decoding, Gymnasium plumbing).

Usage: ``python benchmarks/env_speed.py [--scenario steady] [--episodes 2]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from disaggpilot.env.cluster_env import DisaggClusterEnv
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.sim.cluster import SimBackend


class TimedSimBackend(SimBackend):
    """The simulator, with the wall time spent inside ``advance`` and ``reset`` accumulated."""

    inside_s = 0.0

    def advance(self, seconds: float) -> MetricsSnapshot:
        started = time.perf_counter()
        try:
            return super().advance(seconds)
        finally:
            TimedSimBackend.inside_s += time.perf_counter() - started

    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        started = time.perf_counter()
        try:
            return super().reset(seed)
        finally:
            TimedSimBackend.inside_s += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="steady", help="scenario name in configs/scenario/")
    parser.add_argument("--episodes", type=int, default=2, help="full episodes to run")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    environment = DisaggClusterEnv(args.scenario, backend_factory=TimedSimBackend)
    environment.action_space.seed(0)
    steps, started = 0, time.perf_counter()
    for episode in range(args.episodes):
        environment.reset(seed=episode)
        done = False
        while not done:
            masks = np.split(environment.action_masks(), np.cumsum(environment.action_space.nvec)[:-1])
            action = np.array([np.random.default_rng(steps).choice(np.flatnonzero(m)) for m in masks])
            *_, terminated, truncated, _ = environment.step(action)
            done = terminated or truncated
            steps += 1
    wall = time.perf_counter() - started
    outside = wall - TimedSimBackend.inside_s
    print(f"scenario {args.scenario}: {steps} steps of {environment.config.interval_s:.0f} s, random masked actions")
    print(f"wall {wall:.2f} s, inside the simulator {TimedSimBackend.inside_s:.2f} s")
    print(f"share of time outside the simulator: {outside / wall:.1%}")
    print(f"environment steps per wall-second (one core): {steps / wall:.1f}")


if __name__ == "__main__":
    main()
