"""Proof "Emulated GPU cluster": the controller runs a headroom-mode policy bundle against a local cluster of
emulated H100 replicas through a flash crowd, in active mode with ``controller.actuator=local``, scaling up for
the crowd and down after it, and no request is lost.

The bundle (``planner_bundle_dir``, built by the fixture in ``tests/localcluster/conftest.py``) is untrained, with
its action head biased to fixed cautious levels (prefill 0.2, decode 0.6) and the 2-minute demand window of
``disaggpilot-ppo-v3``, which this proof ran until v1-v3 left the repository: a 2-minute window lets it
scale down within this 8-minute run, where the shipped v4's 20-minute window would still hold the crowd's
replicas. What is proved is the control plane (bundle loaded, spec and hash checked, decisions sized from
measured demand and applied to emulated replicas), not what training learned.

The rig (``localcluster.rig.LocalCluster``) runs Prometheus and the gateway; the controller (a subprocess,
``disaggpilot controller ... controller=local``) owns the replicas: it starts the scenario's 2 prefill + 2
decode emulated Llama-3.1-70B TP4 replicas and scales them. The load generator replays a flash crowd (the
consumer tenant's rate x5 for three minutes of GPU time). Everything runs 8x faster than real GPUs
(``time_scale`` 0.125); the controller reads the cluster in GPU time (``env.live.time_scale``), so the bundle
decides every 30 GPU seconds (3.75 wall seconds), the interval its spec pins, on the rates and latencies
it would see on real H100s. A headroom bundle sizes the pools from measured demand, so it carries over to
this one-tenant scenario it never saw; the delta-mode v1 did not (it grew prefill to its maximum at the base
load).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.env.live.launcher import free_port
from disaggpilot.localcluster.loadgen import run_loadgen
from disaggpilot.localcluster.rig import LocalCluster, RigConfig
from tests.env.live.conftest import requires_prometheus
from tests.localcluster.controller_watch import (
    Watch,
    controller_process,
    controller_value,
    get_text,
    kill_orphan_replicas,
    merge_overrides,
)

TIME_SCALE = 0.125
INTERVAL_GPU_S = 30.0  # the bundle's interval (its spec pins it)
SCENARIO = """
name: rig_flash_crowd
description: one tenant's rate jumps 5x for three minutes; prefill-heavy (6k-token prompts, 24-token answers)
model: llama-3.1-70b
hardware: h100-sxm
duration_s: 480.0
tenants:
  - name: consumer
    ttft_slo_s: 2.0
    tpot_slo_s: 0.1
    attainment_target: 0.9
    arrival:
      process: poisson
      rate_rps: 0.5
      changes: [{start_s: 90.0, duration_s: 180.0, multiplier: 5.0}]
    lengths: {kind: lognormal, prompt_mean: 6000, prompt_cv: 0.2, output_mean: 24, output_cv: 0.3}
cluster:
  prefill: {replicas: 2, tp: 4, max_num_batched_tokens: 8192, max_num_seqs: 128, min_replicas: 1, max_replicas: 10}
  decode: {replicas: 2, tp: 4, max_num_batched_tokens: 8192, max_num_seqs: 256, min_replicas: 2, max_replicas: 4}
  aggregated: {enabled: false, replicas: 0, min_replicas: 0}
  gpu_budget: 48
  cold_start_s: 8.0
"""
CROWD_WALL_S = (90.0 * TIME_SCALE, 270.0 * TIME_SCALE)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    scenario = tmp_path / "rig_flash_crowd.yaml"
    scenario.write_text(SCENARIO)
    config = RigConfig(scenario=str(scenario), time_scale=TIME_SCALE, own_replicas=False,
                       workdir=str(tmp_path / "rig"))
    with LocalCluster(config) as running:
        yield running


@pytest.fixture
def controller(cluster: LocalCluster, planner_bundle_dir: Path, tmp_path: Path
               ) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    bundle = planner_bundle_dir
    overrides = merge_overrides(cluster.controller_overrides(interval_s=INTERVAL_GPU_S), [
        f"controller.bundle={bundle}", f"controller.expected_hash={load_bundle(bundle).content_hash}",
        "controller.shield.up_cooldown_s=0",
        f"controller.shield.down_cooldown_s={2 * INTERVAL_GPU_S}", f"controller.metrics_port={port}",
        "controller.launcher.health_timeout_s=60", "controller.log_format=json", f"hydra.run.dir={tmp_path}/ctl"])
    log_path = tmp_path / "controller.log"
    try:
        with controller_process(overrides, log_path) as process:
            yield process, f"http://127.0.0.1:{port}/metrics", log_path
    finally:
        kill_orphan_replicas(cluster.discovery_path, "disaggpilot.localcluster.emulator")


def crowd_peaks(watch: Watch) -> tuple[float, float]:
    """The most prefill replicas the controller asked for before the crowd, and during it."""
    crowd_start, crowd_end = CROWD_WALL_S
    before = watch.peak("prefill", 0.0, crowd_start)
    return before, watch.peak("prefill", crowd_start, crowd_end + 8 * INTERVAL_GPU_S * TIME_SCALE)


def settled(watch: Watch) -> bool:
    """Back down after the crowd: near the base load's size, at most half the peak.

    The bundle keeps a replica or two of margin after a crowd; the demand window has long forgotten
    the crowd by the end.
    """
    if not watch.samples:
        return False
    before, during = crowd_peaks(watch)
    return watch.samples[-1].desired.get("prefill", 0) <= min(before + 2, during / 2)


@requires_prometheus
@pytest.mark.slow
def test_the_controller_scales_emulated_replicas_through_a_flash_crowd_without_losing_a_request(
        cluster: LocalCluster, controller: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    started = time.monotonic()
    process, metrics_url, log_path = controller
    deadline = time.monotonic() + 90
    # Replicas up, Prometheus sees them, the loop runs.
    while controller_value(get_text(metrics_url, timeout_s=2.0), "decisions_total") < 1:
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "the controller made no decision: " + log_path.read_text()[-3000:]
        time.sleep(0.5)
    watch = Watch(metrics_url, cluster.discovery_path).start()
    try:
        report = run_loadgen(cluster.loadgen_config(request_timeout_s=60.0), str(cluster.config.scenario))
        settle = time.monotonic() + 20  # scale-down may finish after the last request
        while time.monotonic() < settle and not settled(watch):
            time.sleep(0.5)
    finally:
        watch.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    elapsed = time.monotonic() - started

    counts = report.counts()
    assert counts["lost"] == 0 and counts["rejected"] == 0, counts
    assert all(r.status == 200 for r in report.results)
    before, during = crowd_peaks(watch)
    final = watch.samples[-1]
    prefill = [int(s.desired.get("prefill", 0)) for s in watch.samples]
    timeline = [n for i, n in enumerate(prefill) if i == 0 or n != prefill[i - 1]]  # desired prefill, per change
    assert before <= 3 and during >= 6, str(timeline)
    assert settled(watch), str(timeline)
    assert max(sum(s.listed.values()) for s in watch.samples) >= 8  # 8+ emulated H100 replicas at the peak
    assert final.applied >= 3 and final.decisions >= 15
    decisions = [json.loads(line) for line in log_path.read_text().splitlines() if '"decision"' in line]
    assert any(d.get("applied") for d in decisions)
    # Every decision was the bundle's: loaded (spec and hash checked), never replaced by the fallback planner.
    assert {(d["source"], d["reason"]) for d in decisions} == {("policy", None)}, decisions[-1]
    print(f"\nflash crowd on emulated H100s: {len(report.results)} requests, prefill desired {before:.0f} -> "
          f"{during:.0f} -> {final.desired['prefill']:.0f}, peak replicas listed "
          f"{max(sum(s.listed.values()) for s in watch.samples)}, test wall time {elapsed:.1f} s; desired prefill "
          f"per change {timeline} (run_loadgen printed the request table above)")
