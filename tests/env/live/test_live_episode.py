"""``env=live``: ``DisaggClusterEnv`` runs an episode on the emulated rig through ``live_backend_factory``, with
the observation and action spec it has in simulation. The rig runs twice as fast as real GPUs; the environment
works in the scenario's time (the rig's ``live_config`` carries ``time_scale``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.live.backend import live_backend_factory
from disaggpilot.env.metrics import GW_ARRIVED
from disaggpilot.env.scenario import load_scenario
from disaggpilot.localcluster.loadgen import LoadgenReport, run_loadgen
from disaggpilot.localcluster.rig import LocalCluster, RigConfig
from tests.env.live.conftest import requires_prometheus

SCENARIO = """
name: live_episode
model: llama-3.1-70b
hardware: h100-sxm
duration_s: 40.0
tenants:
  - name: chat
    ttft_slo_s: 2.0
    tpot_slo_s: 0.1
    attainment_target: 0.9
    arrival: {process: poisson, rate_rps: 2.0}
    lengths: {kind: lognormal, prompt_mean: 2000, prompt_cv: 0.3, output_mean: 32, output_cv: 0.3}
cluster:
  prefill: {replicas: 1, tp: 4, max_num_batched_tokens: 8192, max_num_seqs: 128, min_replicas: 1, max_replicas: 4}
  decode: {replicas: 1, tp: 4, max_num_batched_tokens: 8192, max_num_seqs: 256, min_replicas: 1, max_replicas: 4}
  aggregated: {enabled: false, replicas: 0, min_replicas: 0}
  gpu_budget: 32
  cold_start_s: 4.0
"""
TIME_SCALE = 0.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    scenario = tmp_path / "live_episode.yaml"
    scenario.write_text(SCENARIO)
    with LocalCluster(RigConfig(scenario=str(scenario), time_scale=TIME_SCALE)) as running:
        yield running


@requires_prometheus
@pytest.mark.slow
def test_an_episode_on_the_emulated_rig_has_the_simulators_observation_spec(cluster: LocalCluster) -> None:
    scenario = load_scenario(cluster.config.scenario)
    config = EnvConfig(interval_s=6.0, horizon_s=18.0)  # 3 wall seconds per interval
    live = DisaggClusterEnv(scenario, config=config,
                            backend_factory=live_backend_factory(cluster.live_config, cluster.actuator))
    simulated = DisaggClusterEnv(scenario, config=config)
    assert live.spec_dict() == simulated.spec_dict()
    reports: list[LoadgenReport] = []
    load = threading.Thread(target=lambda: reports.append(run_loadgen(cluster.loadgen_config(),
                                                                      str(cluster.config.scenario))))
    load.start()
    try:
        observation, _ = live.reset(seed=0)
        sim_observation, _ = simulated.reset(seed=0)
        assert observation.shape == sim_observation.shape and live.observation_space.contains(observation)
        steps = [live.step_targets(ClusterAction.replicas(prefill=2, decode=1))]
        steps += [live.step_targets(ClusterAction.replicas(prefill=2, decode=1)) for _ in range(2)]
    finally:
        load.join(timeout=120)
        live.close()
    assert [truncated for *_, truncated, _ in steps] == [False, False, True]
    for observation, reward, _, _, info in steps:
        assert live.observation_space.contains(observation) and np.isfinite(reward)
        assert {"slo/chat/attainment", "slo/chat/judged"} <= set(info)
    assert live.history[-1].tenants["chat"].counters[GW_ARRIVED] > 0  # the load reached the gateway
    # Snapshots are in scenario seconds: 6 s intervals, though each lasted 3 wall seconds.
    assert [round(snapshot.interval_s) for snapshot in live.history[1:]] == [6, 6, 6]
    assert cluster.launcher is not None and len(cluster.launcher.replicas("prefill")) == 2  # the action acted
    assert reports and reports[0].counts()["lost"] == 0
