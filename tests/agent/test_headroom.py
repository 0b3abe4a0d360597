"""The ``headroom`` action mode: settings, the sizer's arithmetic, the wrapper, and a bundle trained in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.errors import BundleError
from disaggpilot.agent.evaluation.episode import EpisodeTask, play
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.headroom import HeadroomEnv, HeadroomSettings, HeadroomSizer, settings_from_spec
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.agent.ppo_policy import ModelPolicy, PpoPolicy
from disaggpilot.agent.training.config import PpoConfig
from disaggpilot.env.action import ActionConfig
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.structured import build

ROOT = Path(__file__).resolve().parents[2]
SHORT = EnvConfig(horizon_s=600.0)


def run_levels(levels: tuple[int, int], scenario: str = "diurnal") -> DisaggClusterEnv:
    """An episode of fixed levels; returns the cluster environment with its history."""
    cluster_env = DisaggClusterEnv(load_scenario(scenario), config=SHORT)
    environment = HeadroomEnv(cluster_env, HeadroomSettings())
    environment.reset(seed=0)
    done = False
    while not done:
        *_, terminated, truncated, _ = environment.step(np.array(levels))
        done = terminated or truncated
    return cluster_env


def test_bad_levels_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"agent\.headroom\.prefill_utilization_levels"):
        HeadroomSettings(prefill_utilization_levels=[0.5, 0.3])
    with pytest.raises(ConfigError, match=r"agent\.headroom\.decode_utilization_levels"):
        HeadroomSettings(decode_utilization_levels=[0.0, 0.5])
    with pytest.raises(ConfigError, match=r"agent\.headroom\.demand_window_intervals"):
        HeadroomSettings(demand_window_intervals=0)


def test_ppo_config_reads_headroom_from_a_mapping() -> None:
    config = build(PpoConfig, {"action_mode": "headroom", "headroom": {"prefill_utilization_levels": [0.4, 0.8]}})
    assert config.headroom_settings is not None
    assert config.headroom_settings.nvec == [2, 6]
    assert PpoConfig().headroom_settings is None


def test_lower_utilisation_buys_more_replicas() -> None:
    """Planning for 20% utilisation must run more replicas than planning for 85%, in both pools."""
    tight, loose = run_levels((6, 4)), run_levels((0, 0))
    def mean_replicas(env: DisaggClusterEnv, role: str) -> float:
        return float(np.mean([s.pools[role].replicas_billed for s in env.history[2:]]))
    for role in ("prefill", "decode"):
        assert mean_replicas(loose, role) > mean_replicas(tight, role)


def test_sizer_targets_follow_the_measured_demand() -> None:
    """Doubling the measured load (the same snapshot observed at half the interval) doubles the prefill need."""
    environment = DisaggClusterEnv(load_scenario("diurnal"), config=SHORT)
    environment.reset(seed=0)
    for _ in range(3):
        environment.step(environment.codec.neutral(environment.snapshot))
    snapshot = environment.history[-1]
    sizer = HeadroomSizer(HeadroomSettings(prefill_utilization_levels=[1.0], decode_utilization_levels=[1.0]))
    sizer.reset(environment.world, 30.0)
    sizer.observe(snapshot)
    once = sizer.targets(np.array([0, 0]), snapshot).pools["prefill"].replicas
    sizer.window[-1].prefill_tokens_per_s *= 2
    twice = sizer.targets(np.array([0, 0]), snapshot).pools["prefill"].replicas
    assert once is not None and twice is not None
    assert once < environment.world.cluster.prefill.max_replicas // 2
    assert twice >= 2 * once - 1
    assert twice <= environment.world.cluster.prefill.max_replicas


def test_wrapper_spec_and_masks() -> None:
    environment = HeadroomEnv(DisaggClusterEnv(load_scenario("steady"), config=SHORT), HeadroomSettings())
    environment.reset(seed=0)
    spec = environment.spec_dict()
    assert spec["action_mode"] == "headroom"
    assert spec["action_nvec"] == [8, 6]
    assert environment.action_masks().shape == (14,)
    assert settings_from_spec(spec, "here") == HeadroomSettings()
    with pytest.raises(BundleError, match="action_mode"):
        settings_from_spec({"action_mode": "sideways"}, "here")


def test_a_model_policy_sizes_as_the_training_wrapper_does() -> None:
    """Validation plays the model as a ModelPolicy: its episodes must be the wrapper's that training sees."""
    masks_seen: list[np.ndarray] = []

    def fixed_levels(observation: np.ndarray, masks: np.ndarray) -> np.ndarray:
        masks_seen.append(masks)
        return np.array([1, 3])

    policy = ModelPolicy(fixed_levels, ActionConfig(), HeadroomSettings())
    trace = play(policy, EpisodeTask(0, PolicySpec(name="model", kind="validation"), load_scenario("diurnal"), 0,
                                     env=SHORT))
    wrapped = run_levels((1, 3)).history[1:]

    def billed(snapshots: list[MetricsSnapshot], role: str) -> list[int]:
        return [s.pools[role].replicas_billed for s in snapshots]

    assert billed(trace.snapshots, "prefill") == billed(wrapped, "prefill")
    assert billed(trace.snapshots, "decode") == billed(wrapped, "decode")
    assert len(set(billed(wrapped, "prefill"))) > 1  # the sizer followed the demand
    assert all(m.shape == (14,) and m.all() for m in masks_seen)


@pytest.mark.slow
def test_a_warm_started_headroom_bundle_trains_loads_and_plays(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", "agent.action_mode=headroom",
               "run.total_timesteps=96", "run.n_envs=1", "agent.n_steps=48", "agent.batch_size=48",
               "agent.n_epochs=1", "run.eval_every_steps=96", "run.checkpoint_every_steps=0",
               "run.validation_horizon_s=120", "run.scenarios=[steady]", "run.validation_scenarios=[steady]",
               "run.progress_bar=false", "agent.prior_action=[3,2]", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.spec["action_mode"] == "headroom"
    # warm-started: the untrained model is validated too, so the bundle is never worse than its prior
    assert [v["steps"] for v in bundle.manifest["validations"]] == [0, 96]
    policy = PpoPolicy(tmp_path / "bundle")
    task = EpisodeTask(0, PolicySpec(name="ppo", kind="ppo"), load_scenario("steady"), 0, env=SHORT)
    trace = play(policy, task)
    assert len(trace.steps) == 20
    assert all(s.pools["prefill"].replicas_billed >= 1 for s in trace.snapshots)


RICH = HeadroomSettings(demand_window_choices=[4, 10, 40], demand_window_intervals=40,
                        prefill_floor_choices=[0, 2, 4], decode_floor_choices=[0, 1, 2])


def test_window_and_floor_dimensions_appear_only_with_a_choice_and_decode_to_their_values() -> None:
    assert [name for name, _ in HeadroomSettings().dimensions] == ["prefill_utilization_level",
                                                                   "decode_utilization_level"]
    assert RICH.nvec == [8, 6, 3, 3, 3]
    choice = RICH.choice(np.array([4, 3, 1, 2, 1]))
    assert (choice.prefill_utilization, choice.decode_utilization) == (0.6, 0.75)
    assert (choice.window_intervals, choice.prefill_floor, choice.decode_floor) == (10, 4, 1)
    floors_only = HeadroomSettings(decode_floor_choices=[0, 3])
    assert floors_only.nvec == [8, 6, 2]
    assert floors_only.choice(np.array([0, 0, 1])).decode_floor == 3
    assert floors_only.choice(np.array([0, 0, 1])).window_intervals == 4


def test_bad_window_or_floor_choices_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"agent\.headroom\.prefill_floor_choices"):
        HeadroomSettings(prefill_floor_choices=[2, 1])
    with pytest.raises(ConfigError, match=r"agent\.headroom\.demand_window_choices"):
        HeadroomSettings(demand_window_choices=[0, 4])
    with pytest.raises(ConfigError, match=r"agent\.headroom\.demand_window_intervals.*largest"):
        HeadroomSettings(demand_window_choices=[4, 10])
    with pytest.raises(ConfigError, match=r"agent\.headroom\.demand_statistic"):
        HeadroomSettings(demand_statistic="median")


def test_an_old_two_level_bundles_spec_round_trips_unchanged() -> None:
    """Settings read from an old bundle's spec write the same spec back: the wrapper's spec still matches it.
    ``data/ppo_v4_spec.json`` is the spec of ``disaggpilot-ppo-v4``, shipped until 2026-12-07 (v2 and v3 were
    such bundles too); the specialists in ``policies/specialists`` load the same way with their floors."""
    spec = json.loads((Path(__file__).parent / "data" / "ppo_v4_spec.json").read_text())
    settings = settings_from_spec(spec, "v4")
    assert settings is not None and settings.nvec == spec["action_nvec"]
    assert settings.spec() == spec["headroom"]
    assert [name for name, _ in settings.dimensions] == spec["action_dimensions"]
    assert (settings.demand_statistic, settings.prefill_floor_choices, settings.windows) == (
        "peak", [0], [spec["headroom"]["demand_window_intervals"]])


def test_the_chosen_window_and_floors_drive_the_targets() -> None:
    """The same measured demand: a short window forgets an old burst; a floor above the plan sets the pool."""
    environment = DisaggClusterEnv(load_scenario("diurnal"), config=SHORT)
    environment.reset(seed=0)
    for _ in range(6):
        environment.step(environment.codec.neutral(environment.snapshot))
    def targets(settings: HeadroomSettings, action: list[int], burst: bool = False) -> tuple[int, int]:
        sizer = HeadroomSizer(settings)
        sizer.reset(environment.world, 30.0)
        sizer.observe_recent(environment.history)
        if burst:  # an old burst: inside the 10-interval window, not the 4-interval one
            sizer.window[0].prefill_tokens_per_s *= 50
        action_taken = sizer.targets(np.array(action), environment.history[-1])
        prefill, decode = action_taken.pools["prefill"].replicas, action_taken.pools["decode"].replicas
        assert prefill is not None and decode is not None
        return prefill, decode
    short, longer = targets(RICH, [7, 5, 0, 0, 0], burst=True), targets(RICH, [7, 5, 1, 0, 0], burst=True)
    assert longer[0] > short[0] and longer[1] == short[1]
    assert short == targets(RICH, [7, 5, 0, 0, 0])  # the 4-interval window never saw the burst
    floors = HeadroomSettings(prefill_floor_choices=[0, short[0] + 3], decode_floor_choices=[0, short[1] + 2])
    assert targets(floors, [7, 5, 0, 0]) == short  # floor 0: the plan (with the one 4-interval window)
    assert targets(floors, [7, 5, 1, 0]) == (short[0] + 3, short[1])
    assert targets(floors, [7, 5, 0, 1]) == (short[0], short[1] + 2)


def test_a_statistic_dimension_appears_with_a_choice_and_the_chosen_statistic_drives_the_plan() -> None:
    """Heavy-tailed lengths: one interval's huge mean prompt sets the ``peak`` plan, not the ``quantile`` one."""
    both = HeadroomSettings(demand_statistic_choices=["peak", "quantile"], demand_window_intervals=10)
    assert [name for name, _ in both.dimensions][-1] == "demand_statistic" and both.nvec == [8, 6, 2]
    assert both.choice(np.array([0, 0, 1])).demand_statistic == "quantile"
    assert "demand_statistic_choices" not in HeadroomSettings().spec()  # old specs keep matching
    with pytest.raises(ConfigError, match=r"agent\.headroom\.demand_statistic_choices"):
        HeadroomSettings(demand_statistic_choices=["peak", "median"])
    environment = DisaggClusterEnv(load_scenario("diurnal"), config=SHORT)
    environment.reset(seed=0)
    for _ in range(10):
        environment.step(environment.codec.neutral(environment.snapshot))
    sizer = HeadroomSizer(both)
    sizer.reset(environment.world, 30.0)
    sizer.observe_recent(environment.history)
    sizer.window[0].prefill_tokens_per_s *= 40  # one interval of huge prompts among nine ordinary ones
    plans = {}
    for index, statistic in enumerate(both.statistics):
        prefill = sizer.targets(np.array([4, 3, index]), environment.history[-1]).pools["prefill"].replicas
        assert prefill is not None
        plans[statistic] = prefill
    assert plans["peak"] > plans["quantile"]


def test_a_warmed_up_model_policy_sizes_as_one_that_observed_every_interval() -> None:
    """A restarted controller hands the policy the intervals before its first decision (``warm_up``): its first
    targets are those of a policy that saw each interval end; without them it plans from an empty window."""
    environment = DisaggClusterEnv(load_scenario("flash_crowd"), config=SHORT)
    environment.reset(seed=0)
    for _ in range(8):
        environment.step(environment.codec.neutral(environment.snapshot))
    def levels(observation: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return np.array([1, 3])

    settings = HeadroomSettings(demand_window_intervals=4)
    through, warmed, cold = (ModelPolicy(levels, ActionConfig(), settings) for _ in range(3))
    for policy in (through, warmed, cold):
        policy.reset(PolicyContext(environment.world, 30.0))
    for end in range(2, len(environment.history) + 1):
        expected = through.act(np.zeros(1), environment.history[:end])
    assert warmed.warm_up_intervals == 4
    warmed.warm_up(environment.history[1:][-warmed.warm_up_intervals:])
    latest = environment.history[-1:]  # a restarted daemon's own history: its first scrape
    assert warmed.act(np.zeros(1), latest) == expected
    assert cold.act(np.zeros(1), latest) != expected
    assert ModelPolicy(levels, ActionConfig()).warm_up_intervals == 0  # no sizer, nothing to warm
