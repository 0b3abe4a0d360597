"""The teacher: labels per scenario, behaviour cloning and DAgger into a policy that tells workloads apart."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from disaggpilot.agent.config_store import register_configs
from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.headroom import HeadroomEnv, HeadroomSettings
from disaggpilot.agent.training.config import PpoConfig
from disaggpilot.agent.training.teacher import TeacherConfig, collect, distil, greedy_actor
from disaggpilot.agent.training.teacher_config import first_burst_start_s, last_burst_end_s
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.randomization import RandomizationConfig
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


def test_after_a_burst_the_teacher_switches_label_once_the_window_has_forgotten_it() -> None:
    teacher = TeacherConfig(actions={"flash_crowd": [2, 2, 1, 1], "steady": [6, 4, 1, 0]},
                            after_burst_actions={"flash_crowd": [2, 2, 1, 0]}, after_burst_settle_s=300.0)
    world = load_scenario("flash_crowd")  # the consumer's crowd: 3,000-3,600 s
    assert last_burst_end_s(world) == 3600.0 and last_burst_end_s(load_scenario("steady")) is None
    labels = [teacher.label_at(world, t, SETTINGS.nvec).tolist() for t in (0.0, 3300.0, 3870.0, 3900.0, 7000.0)]
    assert labels == [[2, 2, 1, 1]] * 3 + [[2, 2, 1, 0]] * 2
    assert teacher.label_at(load_scenario("steady"), 7000.0, SETTINGS.nvec).tolist() == [6, 4, 1, 0]


def test_before_a_burst_at_a_known_time_the_teacher_labels_the_lean_setting_until_the_lead() -> None:
    teacher = TeacherConfig(actions={"flash_crowd": [2, 2, 1, 1], "steady": [6, 4, 1, 0]},
                            before_burst_actions={"flash_crowd": [2, 2, 0, 0]}, before_burst_lead_s=300.0,
                            after_burst_actions={"flash_crowd": [2, 2, 1, 0]}, after_burst_settle_s=300.0)
    world = load_scenario("flash_crowd")  # the consumer's crowd: 3,000-3,600 s
    assert first_burst_start_s(world) == 3000.0 and first_burst_start_s(load_scenario("steady")) is None
    labels = [teacher.label_at(world, t, SETTINGS.nvec).tolist() for t in (0.0, 2670.0, 2700.0, 3500.0, 3900.0)]
    assert labels == [[2, 2, 0, 0]] * 2 + [[2, 2, 1, 1]] * 2 + [[2, 2, 1, 0]]
    assert teacher.label_at(load_scenario("steady"), 0.0, SETTINGS.nvec).tolist() == [6, 4, 1, 0]
    with pytest.raises(PolicyConfigError, match=r"agent\.teacher\.before_burst_lead_s=-5\.0"):
        TeacherConfig(before_burst_lead_s=-5.0)
    bad = TeacherConfig(actions={"flash_crowd": [0, 0, 0, 0]}, before_burst_actions={"flash_crowd": [0, 0]})
    with pytest.raises(PolicyConfigError, match=r"agent\.teacher\.before_burst_actions\.flash_crowd=\[0, 0\]"):
        bad.label_at(world, 0.0, SETTINGS.nvec)


def test_the_teacher_follows_a_shifted_burst_in_the_episodes_world() -> None:
    teacher = TeacherConfig(actions={"noisy_neighbor": [1, 1, 1, 1]},
                            after_burst_actions={"noisy_neighbor": [1, 1, 1, 0]})
    environment = DisaggClusterEnv(load_scenario("noisy_neighbor"), config=EnvConfig(
        horizon_s=600.0, randomization=RandomizationConfig(burst_shift_s=[-2400.0, -2400.0])))
    environment.reset(seed=2000)
    assert last_burst_end_s(environment.world) == 1200.0  # 2,400-3,600 s moved to 0-1,200 s
    assert teacher.label_at(environment.world, 1500.0, SETTINGS.nvec).tolist() == [1, 1, 1, 0]
    assert teacher.label_at(load_scenario("noisy_neighbor"), 1500.0, SETTINGS.nvec).tolist() == [1, 1, 1, 1]


def test_bad_after_burst_settings_name_the_key() -> None:
    with pytest.raises(PolicyConfigError, match=r"agent\.teacher\.after_burst_settle_s=-1\.0"):
        TeacherConfig(after_burst_settle_s=-1.0)
    teacher = TeacherConfig(actions={"flash_crowd": [0, 0, 0, 0]}, after_burst_actions={"flash_crowd": [0, 0, 9, 0]})
    with pytest.raises(PolicyConfigError, match=r"agent\.teacher\.after_burst_actions\.flash_crowd=\[0, 0, 9, 0\]"):
        teacher.label_at(load_scenario("flash_crowd"), 7000.0, SETTINGS.nvec)


@pytest.mark.parametrize("agent", sorted(path.stem for path in (configs_dir() / "agent").glob("*.yaml")))
def test_every_shipped_agent_configs_labels_fit_its_action_space_all_episode(agent: str) -> None:
    """A label that does not fit the sizer's choices (a floor index past the list, say) would stop a training
    run only when its scenario's first episode reaches that label's time; check every one here."""
    register_configs()
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name="test_teacher"):
        ppo = OmegaConf.to_object(compose(config_name="train", overrides=[f"agent={agent}"]).agent)
    assert isinstance(ppo, PpoConfig)
    teacher, nvec = ppo.teacher, ppo.headroom.nvec
    for name in teacher.actions:
        world = load_scenario(name)
        labels = {tuple(teacher.label_at(world, t, nvec)) for t in np.arange(0.0, world.duration_s, 30.0)}
        named = [teacher.actions[name], teacher.before_burst_actions.get(name), teacher.after_burst_actions.get(name)]
        assert labels == {tuple(label) for label in named if label is not None}
