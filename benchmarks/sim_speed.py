"""Simulator speed on the reference scenario (issue: Llama-3.1-70B TP 4 on H100, Azure 2023 code and
conversation traces replayed for one hour, 8 prefill and 8 decode replicas).

Prints simulated requests per wall-second, simulated seconds per wall-second and peak memory, pinned to
one core. Because this machine is shared and noisy, it also times a fixed pure-Python reference workload
(a heap of events, the simulator's innermost structure) in the same run and prints the ratio.

Usage: ``python benchmarks/sim_speed.py [--repeats 3] [--duration-s 3600]`` (the traces are the repository's
copies in ``data/traces/``).
"""

from __future__ import annotations

import argparse
import heapq
import os
import resource
import time

from disaggpilot.env.errors import TraceError
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.sim.config import ClusterConfig, PoolConfig
from disaggpilot.env.workload import TenantSpec, TraceSpec

TRACES = {"code": "data/traces/azure2023_code.csv", "conv": "data/traces/azure2023_conv.csv"}


def reference_scenario(duration_s: float) -> ScenarioConfig:
    """The issue's reference scenario."""
    tenants = [TenantSpec(name=name, ttft_slo_s=2.0, tpot_slo_s=0.1, trace=TraceSpec(path=path, format="azure"))
               for name, path in TRACES.items()]
    cluster = ClusterConfig(prefill=PoolConfig(replicas=8, tp=4, max_replicas=16),
                            decode=PoolConfig(replicas=8, tp=4, max_replicas=16), gpu_budget=128)
    return ScenarioConfig(name="reference", model="llama-3.1-70b", hardware="h100-sxm", duration_s=duration_s,
                          tenants=tenants, cluster=cluster)


def time_simulation(scenario: ScenarioConfig, interval_s: float = 30.0) -> tuple[float, int]:
    """Wall seconds to simulate the scenario (reset included) and the number of requests."""
    backend = SimBackend(scenario)
    started = time.perf_counter()
    backend.reset(0)
    steps = round(scenario.duration_s / interval_s)
    for _ in range(steps):
        backend.advance(interval_s)
    wall = time.perf_counter() - started
    if backend.in_flight and len(backend.in_flight) > 0.01 * backend.totals["arrived"]:
        raise SystemExit(f"reference scenario is overloaded: {len(backend.in_flight)} requests still in flight")
    return wall, backend.totals["arrived"]


def heap_reference(operations: int = 2_000_000) -> float:
    """Heap push/pop pairs per wall-second: a machine-speed yardstick measured in the same run."""
    heap: list[tuple[float, int]] = []
    started = time.perf_counter()
    for i in range(operations):
        heapq.heappush(heap, ((i * 7919) % 1000 * 0.001, i))
        if len(heap) > 64:
            heapq.heappop(heap)
    return operations / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs; the fastest is reported")
    parser.add_argument("--duration-s", type=float, default=3600.0, help="simulated seconds")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core, as the floor is stated
    scenario = reference_scenario(args.duration_s)
    try:
        runs = [time_simulation(scenario) for _ in range(max(1, args.repeats))]
    except TraceError as error:  # a trace missing from data/: the message says how to restore it
        raise SystemExit(f"error: {error}") from None
    wall, requests = min(runs)
    yardstick = heap_reference()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"reference scenario: {requests} requests, {args.duration_s:.0f} simulated s, 8+8 replicas, one core")
    print(f"wall time (best of {len(runs)}): {wall:.3f} s  (all runs: {', '.join(f'{w:.3f}' for w, _ in runs)})")
    print(f"simulated seconds per wall-second: {args.duration_s / wall:,.0f}")
    print(f"heap push+pop pairs per wall-second (same run, yardstick): {yardstick:,.0f}")
    print(f"simulated requests per 1000 yardstick operations: {requests / wall / yardstick * 1000:.2f}")
    print(f"peak memory (whole process, max RSS): {peak_mb:.0f} MB")
    print(f"simulated requests per wall-second: {requests / wall:,.0f}")


if __name__ == "__main__":
    main()
