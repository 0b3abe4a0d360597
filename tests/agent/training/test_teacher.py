"""The teacher: labels per scenario, behaviour cloning and DAgger into a policy that tells workloads apart."""

from __future__ import annotations

import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.headroom import HeadroomEnv, HeadroomSettings
from disaggpilot.agent.training.teacher import TeacherConfig, collect, distil, greedy_actor
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import load_scenario

SHORT = EnvConfig(horizon_s=600.0)
SETTINGS = HeadroomSettings(prefill_floor_choices=[0, 4], decode_floor_choices=[0, 2])
# two workloads a controller must tell apart from what it observes, with opposite teacher settings
LABELS = {"steady": [6, 4, 1, 0], "long_context": [1, 1, 0, 1]}


def test_bad_teacher_settings_name_the_key_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"agent\.teacher\.seeds.*100"):
        TeacherConfig(seeds=[100, 2000])
    with pytest.raises(PolicyConfigError, match=r"agent\.teacher\.dagger_rounds=-1"):
        TeacherConfig(dagger_rounds=-1)
    teacher = TeacherConfig(actions={"steady": [9, 0, 0, 0]})
    with pytest.raises(PolicyConfigError, match=r"agent\.teacher\.actions\.steady=\[9, 0, 0, 0\].*\[8, 6, 2, 2\]"):
        teacher.label("steady", SETTINGS.nvec)
    with pytest.raises(PolicyConfigError, match=r"no entry for training scenario 'diurnal'"):
        teacher.label("diurnal", SETTINGS.nvec)


def test_the_distilled_policy_picks_each_workloads_setting_on_unseen_seeds() -> None:
    scenarios = [load_scenario(name) for name in LABELS]
    vec = VecNormalize(DummyVecEnv([lambda: HeadroomEnv(DisaggClusterEnv(scenarios=scenarios, config=SHORT),
                                                        SETTINGS)]), norm_reward=False)
    model = MaskablePPO("MlpPolicy", vec, seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    teacher = TeacherConfig(actions=LABELS, seeds=[2000], dagger_rounds=1, epochs=80, batch_size=32)
    accuracy = distil(model, scenarios, teacher, SHORT, RewardConfig(), SETTINGS, seed=0)
    assert accuracy > 0.95
    held_out = TeacherConfig(actions=LABELS, seeds=[3000])
    observations, labels = collect(scenarios, held_out, SHORT, RewardConfig(), SETTINGS, act=greedy_actor(model))
    assert len(observations) == 2 * 20  # two 600 s episodes of 30 s intervals, labelled by scenario
    assert (labels[:20] == LABELS["steady"]).all() and (labels[20:] == LABELS["long_context"]).all()
    act = greedy_actor(model)
    chosen = np.array([act(observation) for observation in observations])
    assert np.mean(np.all(chosen == labels, axis=1)) > 0.9
    assert model.get_vec_normalize_env() is not None and vec.obs_rms.count >= 40  # the teacher's 40 first states
