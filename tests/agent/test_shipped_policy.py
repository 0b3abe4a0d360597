"""The shipped bundle stays loadable and matches the environment's current contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from disaggpilot.agent.analysis import shipped_bundle
from disaggpilot.agent.bundle import load_bundle, validate_spec
from disaggpilot.agent.headroom import HeadroomEnv, settings_from_spec
from disaggpilot.agent.policy import PolicyContext, observing_as
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
    """The shipped bundle matches the headroom wrapper's spec (with its own levels), its action family reaches
    every setting the generalist's teacher labels (``configs/agent/generalist.yaml``), and it drives an episode."""
    bundle = load_bundle(SHIPPED)
    environment = DisaggClusterEnv("flash_crowd", config=observing_as(bundle.trained_observation(),
                                                                      EnvConfig(horizon_s=300.0)))
    settings = settings_from_spec(bundle.spec, SHIPPED)
    assert settings is not None
    labels = OmegaConf.to_container(OmegaConf.load(configs_dir() / "agent" / "generalist.yaml").teacher.actions)
    assert isinstance(labels, dict) and len(labels) == 5
    for label in labels.values():
        assert all(0 <= index < size for index, size in zip(label, bundle.spec["action_nvec"], strict=True))
    assert 3 in settings.decode_floor_choices and "quantile" in settings.demand_statistic_choices
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


def test_new_runs_and_the_shipped_bundle_observe_the_cold_start() -> None:
    """``configs/env/default.yaml`` turns the cold-start feature on, and the shipped bundle was trained with it (v4,
    trained without, keeps its 85-feature layout: ``tests/env/observation_cases.py``)."""
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name="test_cold_start"):
        train = compose(config_name="train")
    assert build(EnvConfig, OmegaConf.to_container(train.env, resolve=True), "env").observation.cold_start_feature
    bundle = load_bundle(SHIPPED)
    trained = bundle.trained_observation()
    assert trained is not None and trained.cold_start_feature and trained.budget_features
    assert "cluster/cold_start" in bundle.spec["observation_features"]
    environment = DisaggClusterEnv("steady", config=observing_as(trained, EnvConfig()))
    assert list(environment.observer.names) == bundle.spec["observation_features"]
