"""The shipped bundle stays loadable and matches the environment's current contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from disaggpilot.agent.analysis import shipped_bundle
from disaggpilot.agent.baselines import HeadroomPlannerSettings
from disaggpilot.agent.bundle import load_bundle, validate_spec
from disaggpilot.agent.headroom import HeadroomEnv, settings_from_spec
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.structured import build

SHIPPED = shipped_bundle()
"""The shipped policy (headroom mode), the one bundle ``policies/`` carries; a delta-mode one is ``bundle_dir``."""


def play_episode(policy: PpoPolicy, environment: DisaggClusterEnv) -> dict[str, Any]:
    """Run ``policy`` through one episode of ``environment`` (seed 0); the last step's ``info``."""
    observation, info = environment.reset(seed=0)
    policy.reset(PolicyContext(scenario=environment.world, interval_s=30.0, feature_names=environment.observer.names))
    done = False
    while not done:
        observation, _, terminated, truncated, info = environment.step_targets(
            policy.act(observation, environment.history))
        done = terminated or truncated
    return info


def test_shipped_bundle_matches_the_headroom_spec_and_sizes_from_demand() -> None:
    """The shipped bundle matches the headroom wrapper's spec (with its own levels) and drives an episode."""
    environment = DisaggClusterEnv("flash_crowd", config=EnvConfig(horizon_s=300.0))
    bundle = load_bundle(SHIPPED)
    settings = settings_from_spec(bundle.spec, SHIPPED)
    assert settings is not None  # warm-started at the fixed planner's defaults, its window and levels are the planner's
    planner = HeadroomPlannerSettings()
    assert settings.demand_window_intervals == planner.demand_window_intervals
    assert planner.prefill_utilization in settings.prefill_utilization_levels
    assert planner.decode_utilization in settings.decode_utilization_levels
    validate_spec(bundle.spec, HeadroomEnv(environment, settings).spec_dict(), SHIPPED)
    assert len(bundle.content_hash) == 64
    info = play_episode(PpoPolicy(SHIPPED, expected_hash=bundle.content_hash), environment)
    assert environment.snapshot is not None and environment.snapshot.gpus_billed() <= 80
    assert all(s.pools["prefill"].replicas_billed >= 1 for s in environment.history)
    assert 0.0 <= info["slo/consumer/attainment"] <= 1.0


def test_a_delta_mode_bundle_matches_a_scenarios_environment_spec_and_acts(bundle_dir: Path) -> None:
    environment = DisaggClusterEnv("diurnal", config=EnvConfig(horizon_s=600.0))
    bundle = load_bundle(bundle_dir, expected_spec=environment.spec_dict())
    play_episode(PpoPolicy(bundle_dir, expected_hash=bundle.content_hash), environment)
    assert environment.history[-1].pools["decode"].replicas_billed >= 1


def test_new_runs_observe_the_cold_start_and_the_shipped_bundle_keeps_its_layout() -> None:
    """``configs/env/default.yaml`` turns the cold-start feature on; the shipped bundle brings its own (off)."""
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name="test_cold_start"):
        train = compose(config_name="train")
    assert build(EnvConfig, OmegaConf.to_container(train.env, resolve=True), "env").observation.cold_start_feature
    bundle = load_bundle(SHIPPED)
    trained = bundle.trained_observation()
    assert trained is not None and not trained.cold_start_feature
    assert "cluster/cold_start" not in bundle.spec["observation_features"]
