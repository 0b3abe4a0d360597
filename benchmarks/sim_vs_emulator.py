"""Fidelity of the local rig: the same scenario and static cluster on the simulator and on emulated replicas.

One short, modest-load scenario (one chat tenant, Poisson 1.5 req/s, ~3k-token prompts, ~64-token answers,
one prefill and one decode replica of Llama-3.1-70B TP4 on H100-SXM) runs twice with the same seed, so both
see the same requests: on ``env.sim`` (``SimBackend``), and through ``localcluster.rig`` (gateway, P/D replicas
of ``localcluster.emulator``, the load generator replaying it with ``--time-scale``). Latencies are in GPU
seconds on both sides: the load generator divides what it measures on the wall clock by the time scale.

The table compares p50 and p90 TTFT and TPOT, exact (per request: the simulator's requests recorded as they
finish, the load generator's results) and as ``env.summary`` reads them from the contract's histograms.
What the rig adds over the simulator shows as the difference: HTTP hops through the gateway, the KV
hand-off protocol, event-loop delays on a busy machine (magnified by ``1 / time_scale``).

Usage: ``python benchmarks/sim_vs_emulator.py [--time-scale 0.5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.sim.request import Request
from disaggpilot.env.summary import summarize
from disaggpilot.localcluster.loadgen import run_loadgen
from disaggpilot.localcluster.rig import LocalCluster, RigConfig

SCENARIO = """
name: sim_vs_emulator
description: one chat tenant at a modest load on one prefill and one decode replica
model: llama-3.1-70b
hardware: h100-sxm
duration_s: 60.0
tenants:
  - name: chat
    ttft_slo_s: 2.0
    tpot_slo_s: 0.1
    attainment_target: 0.9
    arrival: {process: poisson, rate_rps: 1.5}
    lengths: {kind: lognormal, prompt_mean: 3000, prompt_cv: 0.3, output_mean: 64, output_cv: 0.3}
cluster:
  prefill: {replicas: 1, tp: 4, max_num_batched_tokens: 8192, max_num_seqs: 128, min_replicas: 1, max_replicas: 1}
  decode: {replicas: 1, tp: 4, max_num_batched_tokens: 8192, max_num_seqs: 256, min_replicas: 1, max_replicas: 1}
  aggregated: {enabled: false, replicas: 0, min_replicas: 0}
  gpu_budget: 8
  cold_start_s: 0.0
"""
SEED = 0


class RecordingSim(SimBackend):
    """The simulator, keeping each finished request's exact TTFT and TPOT (seconds)."""

    ttfts: list[float]
    tpots: list[float]

    def finished(self, request: Request, time: float) -> None:
        """Record, then let the simulator account for the request as usual."""
        super().finished(request, time)
        self.ttfts.append(request.first_token - request.arrival)
        if request.output > 1:
            self.tpots.append((time - request.first_token) / (request.output - 1))


def run_simulator(scenario_path: Path) -> dict[str, float]:
    """The scenario on the simulator: exact and histogram percentiles (seconds)."""
    scenario = load_scenario(scenario_path)
    backend = RecordingSim(scenario)
    backend.ttfts, backend.tpots = [], []
    backend.reset(SEED)
    snapshots = [backend.advance(scenario.duration_s)]
    drain = backend.advance(600.0)  # let the requests still in flight finish; their arrivals are all counted
    snapshots.append(drain)
    summary = summarize(snapshots, scenario.tenants).tenants[0]
    return _figures(backend.ttfts, backend.tpots, summary)


def run_emulator(scenario_path: Path, time_scale: float) -> dict[str, float]:
    """The scenario through the rig (gateway + emulated P/D replicas): exact and histogram percentiles."""
    config = RigConfig(scenario=str(scenario_path), time_scale=time_scale, scrape_interval_s=1.0)
    with LocalCluster(config) as cluster:
        report = run_loadgen(cluster.loadgen_config(seed=SEED), str(scenario_path))
    counts = report.counts()
    if counts["finished"] != len(report.results):
        raise RuntimeError(f"the rig did not finish every request: {counts}")
    finished = [r for r in report.results if r.outcome == "finished"]
    tpots = [(r.e2e_s - r.ttft_s) / (r.received_tokens - 1) for r in finished if r.received_tokens > 1]
    figures = _figures([r.ttft_s for r in finished], tpots, report.summary.tenants[0])
    figures["max_send_lag_ms"] = report.max_send_lag_s * 1000
    return figures


def _figures(ttfts: list[float], tpots: list[float], row: Any) -> dict[str, float]:
    return {"requests": float(len(ttfts)),
            "ttft_p50_s": float(np.median(ttfts)), "ttft_p90_s": float(np.quantile(ttfts, 0.9)),
            "tpot_p50_s": float(np.median(tpots)), "tpot_p90_s": float(np.quantile(tpots, 0.9)),
            "hist_ttft_p50_s": row.ttft_p50_s, "hist_tpot_p50_s": row.tpot_p50_s}


def compare(time_scale: float, folder: Path) -> dict[str, Any]:
    """Both runs and the relative difference of each figure (emulator / simulator - 1)."""
    scenario_path = folder / "sim_vs_emulator.yaml"
    scenario_path.write_text(SCENARIO)
    started = time.monotonic()
    sim = run_simulator(scenario_path)
    sim_wall = time.monotonic() - started
    emulated = run_emulator(scenario_path, time_scale)
    difference = {key: emulated[key] / sim[key] - 1 if sim[key] else math.nan for key in sim}
    return {"time_scale": time_scale, "simulator": sim, "emulator": emulated, "difference": difference,
            "simulator_wall_s": sim_wall, "rig_wall_s": time.monotonic() - started - sim_wall}


def table(result: dict[str, Any]) -> str:
    """The comparison as text."""
    lines = [f"{'figure':<18}{'simulator':>12}{'emulator':>12}{'diff':>9}"]
    for key in ("requests", "ttft_p50_s", "ttft_p90_s", "tpot_p50_s", "tpot_p90_s", "hist_ttft_p50_s",
                "hist_tpot_p50_s"):
        sim, emulated = result["simulator"][key], result["emulator"][key]
        lines.append(f"{key:<18}{sim:>12.4f}{emulated:>12.4f}{result['difference'][key]:>+9.1%}")
    lines.append(f"time scale {result['time_scale']:g}; wall: simulator {result['simulator_wall_s']:.1f} s, rig "
                 f"{result['rig_wall_s']:.1f} s (ratio {result['rig_wall_s'] / result['simulator_wall_s']:.0f}); "
                 f"worst loadgen send lag {result['emulator']['max_send_lag_ms']:.1f} ms")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run both, print the table (and write JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-scale", type=float, default=0.5, help="wall seconds per GPU second on the rig")
    parser.add_argument("--json", default="", help="write the figures to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sim-vs-emulator-") as folder:
        result = compare(args.time_scale, Path(folder))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
