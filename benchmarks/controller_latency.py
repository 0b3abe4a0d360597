"""Controller decision latency and memory, against the floors of issue 6.

Latency is the loop's own ``Decision.latency_s``: snapshot in hand → shielded action chosen (validation,
observation, policy, shield), excluding the scrape and the actuation. It is measured over ~2,000 decisions
of a PPO bundle on scripted snapshots of the steady scenario (load varying from interval to interval), after
a short warm-up, and again for the fallback path (no bundle: ``controller.fallback.planner``). Memory is the measuring
process's maximum resident set size (torch, stable-baselines3, the policy and the controller loaded).

Without ``--bundle``, a bundle with the production architecture (``configs/agent/ppo.yaml``'s ``net_arch``,
untrained: inference costs the same) is built in a temporary directory, and the measurement runs in a
fresh process (with ``OPENBLAS_NUM_THREADS=1`` for the reference) so that building it does not count towards
memory. With ``--bundle``, set ``OPENBLAS_NUM_THREADS=1`` yourself on a busy machine.

Floors: p99 < 10 ms, max RSS < 400 MB. Figures are also printed as ratios to a reference measured in the
same run (the fastest of 200 128x128 float64 numpy matmuls), so runs on different machines compare.

Usage: ``python benchmarks/controller_latency.py [--bundle DIR] [--decisions 2000]``
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from disaggpilot.agent.bundle import content_hash
from disaggpilot.agent.policy import Policy
from disaggpilot.controller.actuators import BackendActuator
from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import ControllerConfig, PoolBounds, ShieldConfig
from disaggpilot.controller.loop import ControllerLoop
from disaggpilot.controller.policies import load_policy, make_fallback
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.testing import PoolSpecimen, ScriptedBackend, SnapshotSpec, TenantSpecimen

ROOT = Path(__file__).resolve().parents[1]
P99_FLOOR_S, RSS_FLOOR_MB, WARMUP = 0.010, 400.0, 20


def build_bundle(directory: Path) -> Path:
    """An untrained MaskablePPO bundle with the production network, for the steady scenario."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from disaggpilot.agent.bundle import save_bundle

    net_arch = list(OmegaConf.load(ROOT / "configs" / "agent" / "ppo.yaml").net_arch)
    environment = DisaggClusterEnv("steady")
    model = MaskablePPO("MlpPolicy", DummyVecEnv([lambda: environment]), seed=0, device="cpu",
                        policy_kwargs={"net_arch": net_arch})
    model.save(str(directory / "model.zip"))
    size = environment.observation_space.shape[0]
    normalization = {"mean": [0.0] * size, "var": [1.0] * size, "clip_obs": 10.0, "epsilon": 1e-8}
    return save_bundle(directory / "bundle", directory / "model.zip", normalization, environment.spec_dict(),
                       f"net_arch: {net_arch}\n").path


def script(step: int) -> SnapshotSpec:
    """A varying but valid interval of the steady scenario's tenants."""
    rng = np.random.default_rng(step)
    tenants = {name: TenantSpecimen(arrived=int(rng.integers(50, 300)), met=int(rng.integers(40, 120)),
                                    missed=int(rng.integers(0, 10)), ttft_s=float(rng.uniform(0.1, 3.0)),
                                    tpot_s=float(rng.uniform(0.02, 0.12))) for name in ("code", "conv")}
    pools = {role: PoolSpecimen(ready=int(rng.integers(1, 8)), waiting=float(rng.integers(0, 50)),
                                running=float(rng.integers(0, 200)), kv_usage=float(rng.uniform(0, 1)))
             for role in ("prefill", "decode")}
    return SnapshotSpec(tenants=tenants, pools=pools)


def latencies(bundle: str | None, decisions: int) -> np.ndarray:
    """Decision latencies (seconds) of the loop over scripted snapshots, warm-up excluded."""
    shield = ShieldConfig(pools={"prefill": PoolBounds(1, 12), "decode": PoolBounds(1, 12)}, gpu_budget=64)
    pin = None if bundle is None else content_hash(bundle)  # the benchmark built or was given this bundle
    config = ControllerConfig(mode="active", bundle=bundle, fallback_only=bundle is None, expected_hash=pin,
                              shield=shield)
    scenario, env_config = load_scenario("steady"), EnvConfig(interval_s=config.interval_s)
    policy: Policy | None
    policy, problem = load_policy(config, scenario, env_config)
    if bundle is not None and problem is not None:
        raise SystemExit(f"the bundle was refused: {problem.detail}")
    backend = ScriptedBackend(script, follow_actions=False)
    loop = ControllerLoop(config, scenario, env_config, backend, BackendActuator(backend), VirtualClock(), policy,
                          make_fallback(config), startup_problem=problem, seed=0)
    loop.run(WARMUP)
    times = []
    for _ in range(decisions):
        loop.run(1)
        assert loop.last_decision is not None
        times.append(loop.last_decision.latency_s)
    return np.asarray(times)


def reference_s(repeats: int = 200) -> float:
    """Fastest of ``repeats`` 128x128 float64 matmuls (seconds).

    Small enough for BLAS to stay on one thread, and the minimum, so that other processes' load moves it
    little (a 256x256 median swung 20x on a busy two-core machine).
    """
    a = np.random.default_rng(0).standard_normal((128, 128))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        _ = a @ a
        times.append(time.perf_counter() - started)
    return float(np.min(times))


def report(label: str, times: np.ndarray, reference: float) -> float:
    """Print p50/p99 of ``times`` in ms and as multiples of the reference; returns p99 (s)."""
    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
    print(f"{label:<28} p50 {p50 * 1e3:7.3f} ms ({p50 / reference:6.1f}x ref)   "
          f"p99 {p99 * 1e3:7.3f} ms ({p99 / reference:6.1f}x ref)   max {times.max() * 1e3:7.3f} ms   n={len(times)}")
    return float(p99)


def measure(bundle: str, decisions: int) -> int:
    """Measure and print; returns the exit status (1 when a floor is missed)."""
    logging.getLogger("disaggpilot").setLevel(logging.WARNING)  # the decision log is I/O, outside the timing
    reference = reference_s()
    print(f"reference: one 128x128 float64 matmul, fastest of 200: {reference * 1e3:.3f} ms")
    p99 = report("policy (PPO bundle)", latencies(bundle, decisions), reference)
    report(f"fallback ({ControllerConfig().fallback.planner})", latencies(None, max(decisions // 4, 100)), reference)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"max RSS {rss_mb:.0f} MB ({rss_mb / RSS_FLOOR_MB:.2f} of the {RSS_FLOOR_MB:.0f} MB floor)")
    ok = p99 < P99_FLOOR_S and rss_mb < RSS_FLOOR_MB
    print(f"floors (p99 < {P99_FLOOR_S * 1e3:.0f} ms, RSS < {RSS_FLOOR_MB:.0f} MB): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="policy bundle directory (default: build one with the production network)")
    parser.add_argument("--decisions", type=int, default=2000, help="decisions measured (default 2000)")
    args = parser.parse_args()
    if args.bundle is not None:
        raise SystemExit(measure(args.bundle, args.decisions))
    with tempfile.TemporaryDirectory() as work:
        bundle = build_bundle(Path(work))
        print(f"built an untrained bundle with the production network in {bundle}")
        child = [sys.executable, __file__, "--bundle", str(bundle), "--decisions", str(args.decisions)]
        # numpy's BLAS on one thread: the reference matmul then does not wait for a descheduled BLAS thread
        # (the decision path does no numpy BLAS; torch keeps its own threads).
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        raise SystemExit(subprocess.run(child, check=False, env=environment).returncode)


if __name__ == "__main__":
    main()
