"""LiveBackend on the session's real Prometheus: waiting, replica bookkeeping, billing, and the environment on it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from disaggpilot.env.backend import Actuator, ClusterAction, PoolTarget
from disaggpilot.env.catalog import configs_dir, load_gpu
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import BackendError, ConfigError, TemporaryError
from disaggpilot.env.live.backend import LiveBackend, live_backend_factory
from disaggpilot.env.live.config import LiveConfig, PrometheusSourceConfig
from disaggpilot.env.live.errors import SelectorMatchesNothingError
from disaggpilot.env.metrics import GW_ARRIVED, GW_FINISHED, GW_MET, GW_MISSED, GW_PROMPT_TOKENS, RUNNING, TTFT
from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.structured import build
from tests.env.live.conftest import RecordingActuator, RecordingClock, Rig

INTERVAL_S = 1.5  # three scrapes: increase() needs two samples in a window
STEADY = load_scenario("steady")  # prefill + decode at TP 4, tenants code and conv, knobs 8192 / 256


def backend(rig: Rig, actuator: Actuator | None = None, clock: RecordingClock | None = None,
            **pools: str) -> LiveBackend:
    factory = live_backend_factory(LiveConfig(prometheus=rig.source_config(**pools)),
                                   actuator or RecordingActuator(), clock=clock)
    return factory(STEADY)


def test_advance_waits_out_the_interval_since_the_last_snapshot_and_bills_the_gpus(rig: Rig) -> None:
    rig.wait_for_history(INTERVAL_S)
    clock = RecordingClock()
    live = backend(rig, clock=clock)
    first = live.reset(seed=3)
    assert (first.start_s, first.end_s, first.cost_usd, first.source) == (0.0, 0.0, 0.0, "live")
    assert first.pools["prefill"].gauges[RUNNING] == 100.0
    snapshot = live.advance(INTERVAL_S)
    assert clock.sleeps[-1] == pytest.approx(INTERVAL_S, abs=0.2)
    assert snapshot.start_s == 0.0 and snapshot.interval_s == pytest.approx(INTERVAL_S, abs=0.1)
    # prefill: 2 up + 1 loading (starting) replicas, decode: 1 up; TP 4 -> 16 GPUs billed over the interval
    assert snapshot.gpus_billed() == 16
    price = load_gpu(STEADY.hardware).usd_per_gpu_hour
    assert snapshot.gpu_seconds == pytest.approx(16 * snapshot.interval_s)
    assert snapshot.cost_usd == pytest.approx(snapshot.gpu_seconds * price / 3600.0)
    assert live.last_reading is not None and live.last_reading.issues == []
    time.sleep(INTERVAL_S)  # the caller already waited (as the controller loop does): no second wait
    live.advance(INTERVAL_S)
    assert clock.sleeps[-1] <= 0.0


def test_a_sped_up_cluster_is_read_in_the_scenarios_seconds(rig: Rig) -> None:
    """time_scale 0.5 (an emulated rig twice as fast as real GPUs): advance(3.0) waits 1.5 wall seconds and
    the snapshot, its GPU-seconds and its latencies are in scenario seconds."""
    rig.wait_for_history(INTERVAL_S)
    clock = RecordingClock()
    factory = live_backend_factory(LiveConfig(prometheus=rig.source_config(), time_scale=0.5),
                                   RecordingActuator(), clock=clock)
    live = factory(STEADY)
    live.reset()
    snapshot = live.advance(2 * INTERVAL_S)
    assert clock.sleeps[-1] == pytest.approx(INTERVAL_S, abs=0.2)
    assert snapshot.interval_s == pytest.approx(2 * INTERVAL_S, abs=0.2)
    assert snapshot.gpu_seconds == pytest.approx(16 * snapshot.interval_s)
    assert live.last_reading is not None
    wall = live.source.read(live._last - INTERVAL_S, live._last).snapshot  # the same window, unconverted
    for role in ("prefill", "decode"):
        converted, measured = snapshot.pools[role], wall.pools[role]
        assert converted.counters == pytest.approx(measured.counters, rel=0.05)  # counts need no conversion
        ttft, wall_ttft = converted.histograms[TTFT], measured.histograms[TTFT]
        assert ttft.count > 0 and ttft.count == pytest.approx(wall_ttft.count, rel=0.05)
        assert ttft.total == pytest.approx(2 * wall_ttft.total, rel=0.05)


def test_period_so_far_replays_each_tenant_s_counts_interval_by_interval(rig: Rig) -> None:
    """The gateway counts code at 4 arrived, 3 met and 1 missed a second and conv at 2, 2 and 0 (conftest): a
    controller joining an SLO period reads them back in windows of its interval. A tenant whose counters are
    missing is absent from every window."""
    seconds, step = 6.0, 2.0
    rig.wait_for_history(seconds + 2 * step)
    live = backend(rig)
    live.reset()
    windows = live.period_so_far(seconds, step)
    assert 3 <= len(windows) <= 4  # Prometheus aligns the steps to multiples of 2 s
    ends = [w.end_s for w in windows]
    assert ends == sorted(ends) and all(w.interval_s == pytest.approx(step) for w in windows)
    assert ends[-1] <= 1e-6 and ends[-1] > -step - 1e-6  # times relative to the first scrape, like snapshots
    for window in windows:
        code, conv = window.tenants["code"].counters, window.tenants["conv"].counters
        assert (code[GW_ARRIVED], code[GW_MET], code[GW_MISSED]) == pytest.approx((8.0, 6.0, 2.0), rel=0.2)
        assert (code[GW_FINISHED], code[GW_PROMPT_TOKENS]) == pytest.approx((8.0, 16000.0), rel=0.2)  # lengths
        assert (conv[GW_MET], conv[GW_MISSED]) == pytest.approx((4.0, 0.0), rel=0.2, abs=1e-9)
    stale = live_backend_factory(LiveConfig(prometheus=rig.source_config(gateway_selector='job="gateway_stale"')),
                                 RecordingActuator())(STEADY)
    stale.reset()
    assert all(window.tenants == {} for window in stale.period_so_far(seconds, step))
    with pytest.raises(BackendError, match=r"period_so_far\(interval_s=0.0\).*positive"):
        live.period_so_far(seconds, 0.0)


def test_time_scale_must_be_a_factor_in_0_1() -> None:
    for bad in (0.0, -0.5, 2.0):
        with pytest.raises(ConfigError, match=r"live\.time_scale"):
            LiveConfig(prometheus=PrometheusSourceConfig(url="http://127.0.0.1:9090"), time_scale=bad)


def test_applied_targets_drive_knobs_and_starting_and_draining_replicas(rig: Rig) -> None:
    actuator = RecordingActuator()
    live = backend(rig, actuator)
    before = live.reset()
    assert (before.pools["prefill"].max_num_batched_tokens, before.pools["decode"].max_num_seqs) == (8192, 256)
    action = ClusterAction({"prefill": PoolTarget(replicas=5, max_num_batched_tokens=4096),
                            "decode": PoolTarget(replicas=0, max_num_seqs=64)})
    live.apply(action)
    assert actuator.actions == [action]
    snapshot = live.advance(0.1)
    prefill, decode = snapshot.pools["prefill"], snapshot.pools["decode"]
    assert (prefill.replicas_ready, prefill.replicas_starting, prefill.replicas_draining) == (2, 3, 0)
    assert (decode.replicas_ready, decode.replicas_starting, decode.replicas_draining) == (0, 0, 1)
    assert (prefill.max_num_batched_tokens, prefill.max_num_seqs, decode.max_num_seqs) == (4096, 128, 64)
    assert live.replica_targets == {"prefill": 5, "decode": 0}
    live.apply(ClusterAction.replicas(prefill=2, decode=0))
    settled = live.advance(0.1).pools["prefill"]
    # Two up meet the target: the target that is down has just been stopped, it is not starting.
    assert (settled.replicas_ready, settled.replicas_starting, settled.replicas_draining) == (2, 0, 0)


def test_a_failed_actuation_changes_no_target(rig: Rig) -> None:
    class Failing:
        def apply(self, action: ClusterAction) -> None:
            raise TemporaryError("the API server is busy", delay_s=2.0)

    live = backend(rig, Failing())
    live.reset()
    with pytest.raises(TemporaryError, match="busy"):
        live.apply(ClusterAction.replicas(prefill=6))
    assert live.replica_targets == {}


def test_out_of_order_use_is_a_backend_error(rig: Rig) -> None:
    live = backend(rig)
    with pytest.raises(BackendError, match="call reset"):
        live.advance(1.0)
    live.reset()
    with pytest.raises(BackendError, match="does not have"):
        live.apply(ClusterAction.replicas(aggregated=1))
    with pytest.raises(BackendError, match="positive"):
        live.advance(0.0)
    live.close()
    with pytest.raises(BackendError, match="closed"):
        live.reset()


def test_start_up_fails_when_a_selector_matches_nothing(rig: Rig) -> None:
    with pytest.raises(SelectorMatchesNothingError, match=r"live\.prometheus\.pools\.decode"):
        backend(rig, prefill='pool="prefill",vllm="current"', decode='pool="decode",vllm="nope"').reset()


def test_the_factory_wants_a_selector_per_pool_of_the_scenario(rig: Rig) -> None:
    factory = live_backend_factory(LiveConfig(prometheus=rig.source_config(prefill='pool="prefill"')),
                                   RecordingActuator())
    with pytest.raises(ConfigError, match=r"live\.prometheus\.pools.*'steady': \['prefill', 'decode'\]"):
        factory(STEADY)


def test_the_environment_runs_unchanged_on_the_live_backend(rig: Rig) -> None:
    rig.wait_for_history(INTERVAL_S)
    actuator = RecordingActuator()
    config = EnvConfig(interval_s=INTERVAL_S, horizon_s=2 * INTERVAL_S)
    live_env = DisaggClusterEnv("steady", config=config, backend_factory=live_backend_factory(
        LiveConfig(prometheus=rig.source_config()), actuator))
    simulated = DisaggClusterEnv("steady", config=config)
    assert live_env.spec_dict() == simulated.spec_dict()
    assert live_env.observation_space == simulated.observation_space
    try:
        observation, _ = live_env.reset(seed=0)
        assert live_env.observation_space.contains(observation)
        live_env.action_space.seed(0)
        for step in range(2):
            observation, reward, terminated, truncated, info = live_env.step(live_env.action_space.sample())
            assert live_env.observation_space.contains(observation) and np.isfinite(observation).all()
            assert np.isfinite(reward) and not terminated and truncated == (step == 1)
            assert info["slo/code/attainment"] == pytest.approx(0.75, rel=1e-6)
        assert len(actuator.actions) == 2
    finally:
        live_env.close()
        simulated.close()


def plain(node: DictConfig) -> dict[str, Any]:
    raw = OmegaConf.to_container(node, resolve=True)
    assert isinstance(raw, dict)
    return {str(key): value for key, value in raw.items()}


def test_configs_env_live_composes_into_a_live_config() -> None:
    with initialize_config_dir(str(configs_dir()), version_base=None):
        cfg = compose(config_name="env/live", overrides=["env.live.prometheus.url=http://prometheus.monitoring:9090",
                                                         "env.live.prometheus.pools.decode='pool=~\"decode-.*\"'"])
        unset = compose(config_name="env/live")
    raw = plain(cfg.env)
    live = LiveConfig.from_dict(raw.pop("live"))
    assert live.prometheus.pools == {"prefill": 'pool="prefill"', "decode": 'pool=~"decode-.*"'}
    assert build(EnvConfig, raw).interval_s == 30.0  # the rest is the default environment layout
    with pytest.raises(ConfigError, match=r"live\.prometheus\.url='\?\?\?' is invalid"):
        LiveConfig.from_dict(plain(unset.env.live))
    with pytest.raises(ConfigError, match=r"live\.prometheus\.pools\.decode='pool=decode'"):
        LiveConfig.from_dict({"prometheus": {"url": "http://p:9090", "pools": {"decode": "pool=decode"}}})
    with pytest.raises(ConfigError, match=r"live\.prometheus\.colour is not a setting"):
        LiveConfig.from_dict({"prometheus": {"url": "http://p:9090", "colour": "red"}})
