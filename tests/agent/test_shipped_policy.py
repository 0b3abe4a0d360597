"""The shipped bundle stays loadable and matches the environment's current contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.bundle import load_bundle
from agent.policy import PolicyContext
from agent.ppo_policy import PpoPolicy
from env.cluster_env import DisaggClusterEnv, EnvConfig

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "disaggpilot-ppo-v1"


def play_episode(policy: PpoPolicy, environment: DisaggClusterEnv) -> dict[str, Any]:
    """Run ``policy`` through one episode of ``environment`` (seed 0); the last step's ``info``."""
    observation, info = environment.reset(seed=0)
    policy.reset(PolicyContext(scenario=environment.world, interval_s=30.0, feature_names=environment.builder.names))
    done = False
    while not done:
        observation, _, terminated, truncated, info = environment.step_targets(
            policy.act(observation, environment.history))
        done = terminated or truncated
    return info


def test_shipped_bundle_matches_the_environment_spec_and_acts() -> None:
    environment = DisaggClusterEnv("flash_crowd", config=EnvConfig(horizon_s=300.0))
    bundle = load_bundle(SHIPPED, expected_spec=environment.spec_dict())
    assert len(bundle.content_hash) == 64
    info = play_episode(PpoPolicy(SHIPPED, expected_hash=bundle.content_hash), environment)
    assert environment.snapshot is not None and environment.snapshot.gpus_billed() <= 80
    assert 0.0 <= info["slo/consumer/attainment"] <= 1.0


def test_the_experimental_headroom_bundle_loads_and_sizes_from_demand() -> None:
    """The committed headroom bundle matches the headroom wrapper's spec and drives an episode through it."""
    from agent.headroom import HeadroomEnv, HeadroomSettings

    path = SHIPPED.parent / "disaggpilot-ppo-headroom-exp"
    environment = DisaggClusterEnv("diurnal", config=EnvConfig(horizon_s=600.0))
    bundle = load_bundle(path, expected_spec=HeadroomEnv(environment, HeadroomSettings()).spec_dict())
    play_episode(PpoPolicy(path, expected_hash=bundle.content_hash), environment)
    assert all(s.pools["prefill"].replicas_billed >= 1 for s in environment.history)
    assert environment.history[-1].pools["decode"].replicas_billed >= 1
