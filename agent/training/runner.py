"""A training run, top to bottom: environments, model, callbacks, learning, the bundle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import Env
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from disaggpilot.agent.bundle import Bundle, save_bundle
from disaggpilot.agent.evaluation.scenarios import TraceOverride, resolve_scenarios
from disaggpilot.agent.headroom import HeadroomEnv, HeadroomSettings
from disaggpilot.agent.ppo_policy import ActionPredictor
from disaggpilot.agent.ray_cluster import RayConfig
from disaggpilot.agent.training.callbacks import (
    ActorRestartCallback,
    CheckpointEveryCallback,
    InfoLoggerCallback,
    ValidationCallback,
    save_checkpoint,
)
from disaggpilot.agent.training.config import PpoConfig, RunConfig
from disaggpilot.agent.training.prior import apply_prior
from disaggpilot.agent.training.teacher import distil
from disaggpilot.agent.training.validation import ValidationResult, aggregate, run_model_episode, run_policy_episode
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig

log = logging.getLogger("disaggpilot.train")

# PpoConfig fields that configure the environments or the start, not MaskablePPO itself
_NOT_MASKABLE_PPO_ARGUMENTS = ("net_arch", "normalize_observations", "normalize_rewards", "clip_obs", "action_mode",
                               "headroom", "prior_action", "prior_probability", "teacher")


def make_env_factory(scenarios: list[ScenarioConfig], env_config: EnvConfig, reward: RewardConfig,
                     seed: int, headroom: HeadroomSettings | None = None) -> Callable[[], Env[Any, Any]]:
    """A picklable constructor of one monitored training environment (in ``headroom`` mode when given)."""
    def build() -> Env[Any, Any]:
        environment: Env[Any, Any] = DisaggClusterEnv(scenarios=scenarios, config=env_config, reward=reward)
        if headroom is not None:
            environment = HeadroomEnv(environment, headroom)  # type: ignore[arg-type]
        environment.reset(seed=seed)
        return Monitor(environment)
    return build


def make_vec_env(run: RunConfig, ppo: PpoConfig, scenarios: list[ScenarioConfig], env_config: EnvConfig,
                 reward: RewardConfig, ray: RayConfig | None = None) -> VecEnv:
    """The vectorised, optionally normalised, training environments (each seeded from ``run.seed``).

    ``run.vec_env=ray`` puts them in Ray actors configured by ``ray`` (defaults when None).
    """
    factories = [make_env_factory(scenarios, env_config, reward, run.seed * 1000 + rank, ppo.headroom_settings)
                 for rank in range(run.n_envs)]
    vec: VecEnv
    if run.vec_env == "ray":
        from disaggpilot.agent.training.ray_vec_env import RayVecEnv  # imports Ray

        vec = RayVecEnv(factories, ray or RayConfig())
    else:
        vec = SubprocVecEnv(factories) if run.vec_env == "subproc" and run.n_envs > 1 else DummyVecEnv(factories)
    vec.seed(run.seed)
    if ppo.normalize_observations or ppo.normalize_rewards:
        vec = VecNormalize(vec, norm_obs=ppo.normalize_observations, norm_reward=ppo.normalize_rewards,
                           clip_obs=ppo.clip_obs, gamma=ppo.gamma)
    return vec


def build_model(vec: VecEnv, ppo: PpoConfig, run: RunConfig, tensorboard_dir: Path) -> MaskablePPO:
    """A new model, or the checkpoint named by ``run.resume_from`` (with its normalisation statistics)."""
    if run.resume_from:
        checkpoint = Path(run.resume_from)
        if isinstance(vec, VecNormalize) and (checkpoint / "vecnormalize.pkl").is_file():
            restored = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), vec.venv)
            vec.obs_rms, vec.ret_rms = restored.obs_rms, restored.ret_rms
        log.info("resuming from %s", checkpoint)
        return MaskablePPO.load(str(checkpoint / "model.zip"), env=vec, device="cpu",
                                tensorboard_log=str(tensorboard_dir))
    hyper = {k: v for k, v in asdict(ppo).items() if k not in _NOT_MASKABLE_PPO_ARGUMENTS}
    model = MaskablePPO("MlpPolicy", vec, seed=run.seed, device="cpu", tensorboard_log=str(tensorboard_dir),
                        policy_kwargs={"net_arch": list(ppo.net_arch)}, verbose=0, **hyper)
    if ppo.prior_action is not None:
        apply_prior(model, ppo.prior_action, ppo.prior_probability)
        log.info("warm start: action %s with probability %.2f", ppo.prior_action, ppo.prior_probability)
    return model


def greedy_predictor(model: MaskablePPO) -> ActionPredictor:
    """The current model's deterministic, masked action, with training-time observation normalisation."""
    normalizer = model.get_vec_normalize_env()

    def predict(observation: np.ndarray, masks: np.ndarray) -> np.ndarray:
        scaled = normalizer.normalize_obs(observation) if normalizer is not None else observation
        action, _ = model.predict(scaled, deterministic=True, action_masks=masks)
        return np.asarray(action)
    return predict


def sla_planner_reference(scenarios: list[ScenarioConfig], run: RunConfig, env_config: EnvConfig,
                          reward: RewardConfig) -> ValidationResult | None:
    """The Dynamo-style planner on the validation episodes, or None when the baselines are unavailable."""
    try:
        from disaggpilot.agent.baselines import BASELINES, make_baseline
    except ImportError:
        return None
    if "sla_planner" not in BASELINES:
        log.warning("the SLA planner baseline is unavailable: validation runs without a reference")
        return None
    episodes = [run_policy_episode(make_baseline("sla_planner"), scenario, seed, env_config, reward,
                                   run.validation_horizon_s)
                for scenario in scenarios for seed in run.validation_seeds]
    return aggregate(episodes, run.validation_confidence)


def run_scenarios(run: RunConfig, trace: TraceOverride | None = None) -> tuple[list[ScenarioConfig],
                                                                                list[ScenarioConfig]]:
    """The training and the validation scenarios, each replaying ``trace`` for its tenant when one is given.

    The same resolution as ``disaggpilot evaluate`` (``agent.evaluation.scenarios``): validation replays the
    training window too, on ``run.validation_seeds``; the trace fixes that tenant's arrivals, the seeds still
    draw the other tenants' requests and the environment's randomisation.

    Raises:
        ConfigError: an unknown scenario, a bad ``trace.*`` value, or a ``trace.tenant`` the scenario lacks.
        TraceError: the trace file is missing or malformed.
    """
    return resolve_scenarios(run.scenarios, None, trace), resolve_scenarios(run.validation_scenarios, None, trace)


def train(run: RunConfig, ppo: PpoConfig, env_config: EnvConfig, reward: RewardConfig, run_dir: Path,
          config_yaml: str, ray: RayConfig | None = None, trace: TraceOverride | None = None) -> Bundle:
    """Train, validate, checkpoint; write and return the bundle of the best validated model.

    ``ray`` configures the rollout actors when ``run.vec_env=ray``; ``trace`` replays a trace window for one
    tenant of every training and validation scenario (``trace.*``, as ``disaggpilot evaluate`` takes it).
    """
    scenarios, validation = run_scenarios(run, trace)
    vec = make_vec_env(run, ppo, scenarios, env_config, reward, ray)
    model = build_model(vec, ppo, run, run_dir / "tensorboard")
    taught = ppo.teacher.enabled and not run.resume_from
    if taught:
        distil(model, scenarios, ppo.teacher, env_config, reward, ppo.headroom_settings, run.seed)

    def validate() -> ValidationResult:
        predict = greedy_predictor(model)
        return aggregate([run_model_episode(predict, scenario, seed, env_config, reward, run.validation_horizon_s,
                                            ppo.headroom_settings)
                          for scenario in validation for seed in run.validation_seeds],
                         run.validation_confidence)

    reference = sla_planner_reference(validation, run, env_config, reward) if run.eval_every_steps else None
    # a warm-started model is judged before it learns, so the bundle is never worse than its prior
    at_start = (ppo.prior_action is not None and not run.resume_from) or taught
    validator = ValidationCallback(validate, reference, run_dir, run.eval_every_steps, run.early_stop_patience,
                                   at_start=at_start)
    callbacks = CallbackList([InfoLoggerCallback(), ActorRestartCallback(),
                              CheckpointEveryCallback(run_dir / "checkpoints", run.checkpoint_every_steps), validator])
    model.learn(total_timesteps=run.total_timesteps, callback=callbacks, progress_bar=run.progress_bar,
                reset_num_timesteps=not run.resume_from, tb_log_name="ppo")
    save_checkpoint(model, run_dir / "checkpoints" / "final")
    if run.eval_every_steps and not validator.judged_latest():
        validator.run_validation()  # the final model competes for "best" too
    chosen = run_dir / "best" if (run_dir / "best" / "model.zip").is_file() else run_dir / "checkpoints" / "final"
    vec.close()
    return write_bundle(chosen, run, env_config, scenarios[0], reward, run_dir, config_yaml, validator,
                        ppo.headroom_settings)


def write_bundle(checkpoint: Path, run: RunConfig, env_config: EnvConfig, scenario: ScenarioConfig,
                 reward: RewardConfig, run_dir: Path, config_yaml: str, validator: ValidationCallback,
                 headroom: HeadroomSettings | None = None) -> Bundle:
    """The bundle of a checkpoint: model, plain-JSON observation statistics, spec, config, hashes."""
    normalization = None
    if (checkpoint / "vecnormalize.pkl").is_file():
        stats = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), DummyVecEnv([lambda: _spec_env(
            scenario, env_config, reward)]))
        rms: Any = stats.obs_rms  # a RunningMeanStd for a Box observation space
        normalization = {"mean": rms.mean.tolist(), "var": rms.var.tolist(),
                         "clip_obs": float(stats.clip_obs), "epsilon": float(stats.epsilon)}
    environment = _spec_env(scenario, env_config, reward)
    spec = HeadroomEnv(environment, headroom).spec_dict() if headroom else environment.spec_dict()
    target = Path(run.bundle_dir) if Path(run.bundle_dir).is_absolute() else run_dir / run.bundle_dir
    validations = [{"steps": steps, "tokens_per_usd": result.tokens_per_usd, "shortfall": result.shortfall,
                    "min_attainment": result.min_attainment, "holds": result.holds,
                    "tokens_per_usd_by_scenario": {s.scenario: s.tokens_per_usd for s in result.scenarios}}
                   for steps, result in validator.history]
    metadata = {"trained_steps": validator.num_timesteps, "scenarios": list(run.scenarios),
                "best_validation_score": float(validator.best_score), "validations": validations}
    return save_bundle(target, checkpoint / "model.zip", normalization, spec, config_yaml, metadata)


def _spec_env(scenario: ScenarioConfig, env_config: EnvConfig, reward: RewardConfig) -> DisaggClusterEnv:
    return DisaggClusterEnv(scenario, config=env_config, reward=reward)
