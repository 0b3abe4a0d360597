"""Tiny untrained policy bundles for tests of the agent and the controller (fixtures in ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from agent.bundle import save_bundle
from agent.headroom import HeadroomEnv, HeadroomSettings
from env.cluster_env import DisaggClusterEnv, EnvConfig
from env.observation import ObservationConfig
from tests.env.sim.conftest import small_scenario

COLD_START_OBSERVATION = ObservationConfig(cold_start_feature=True, reference_cold_start_s=120.0)
"""Observation settings with the opt-in ``cluster/cold_start`` feature, which the default config lacks."""


def build_bundle(directory: Path, headroom: bool = False, observation: ObservationConfig | None = None) -> Path:
    """A tiny untrained MaskablePPO bundle (net_arch [8]) for the small two-pool scenario, 30 s interval, in the
    ``delta`` action mode or (``headroom``) the utilisation-level mode; with ``observation``, trained on those
    observation settings and recording them in its config.yaml as training does."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    settings = EnvConfig(observation=observation or ObservationConfig())
    environment: DisaggClusterEnv | HeadroomEnv = DisaggClusterEnv(small_scenario(duration_s=300.0), config=settings)
    if headroom:
        environment = HeadroomEnv(environment, HeadroomSettings())
    model = MaskablePPO("MlpPolicy", DummyVecEnv([lambda: environment]), n_steps=16, batch_size=16, seed=0,
                        device="cpu", policy_kwargs={"net_arch": [8]})
    directory.mkdir(parents=True, exist_ok=True)
    model.save(str(directory / "model.zip"))
    size = environment.observation_space.shape[0]
    normalization = {"mean": [0.0] * size, "var": [1.0] * size, "clip_obs": 10.0, "epsilon": 1e-8}
    config_yaml = "seed: 0\n" if observation is None else OmegaConf.to_yaml({"env": {"observation": observation}})
    return save_bundle(directory / "bundle", directory / "model.zip", normalization, environment.spec_dict(),
                       config_yaml).path
