"""``disaggpilot train``: MaskablePPO on the simulator, from Hydra configs; writes a policy bundle.

Examples::

    disaggpilot train run.total_timesteps=20000
    disaggpilot train -m agent.learning_rate=0.0001,0.0003 run.seed=0,1     # a sweep (Hydra multirun)
    disaggpilot train run.resume_from=outputs/train/<run>/checkpoints/latest
    disaggpilot train vec_env=ray ray.address=auto run.n_envs=32              # rollouts in Ray actors
    disaggpilot train trace.path=data/traces/azure2023_conv.csv trace.end_s=1680   # on a trace window
    disaggpilot train -m hydra/launcher=ray_tasks hydra/sweeper=optuna +sweep=ppo_reward   # see configs/sweep/

The job's return value (what a Hydra sweeper maximises) is :func:`sweep_objective` of its validations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from disaggpilot.agent.config_store import register_configs
from disaggpilot.agent.evaluation.scenarios import TraceOverride
from disaggpilot.agent.ray_cluster import RayConfig, RayUnavailableError
from disaggpilot.agent.training.config import PpoConfig, RunConfig
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import PermanentError
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.runlog import log_resolved_config
from disaggpilot.env.structured import build

log = logging.getLogger("disaggpilot.train")
register_configs()  # the schemas configs/train.yaml composes (agent/config_store.py)
FEASIBLE_SHORTFALL = 1e-9
"""SLO shortfall below which a validation counts as meeting every attainment target."""


def sweep_objective(validations: Sequence[Mapping[str, float]]) -> float:
    """What a sweep maximises: validation goodput tokens per dollar subject to attainment.

    Over the run's validations (``validations`` in the bundle manifest), the best goodput tokens per dollar
    (millions, >= 0) among those that met every tenant's attainment target in every validation episode; when
    none did, -1 minus the smallest SLO shortfall (so any feasible run beats any infeasible one, and among
    infeasible runs the nearest to feasible wins); -1e9 when the run never validated. The reward's own
    weights play no part, so a sweep over them compares runs on the same scale.
    """
    if not validations:
        return -1e9
    feasible = [float(v["tokens_per_usd"]) / 1e6 for v in validations if float(v["shortfall"]) <= FEASIBLE_SHORTFALL]
    return max(feasible) if feasible else -1.0 - min(float(v["shortfall"]) for v in validations)


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="train")
def main(cfg: DictConfig) -> float:
    """Entry point of ``disaggpilot train``; returns :func:`sweep_objective` for Hydra sweepers."""
    from disaggpilot.agent.training.runner import run_scenarios, train  # deferred: imports torch

    try:  # settings first: a bad input is named before anything else is printed
        run, ppo = build(RunConfig, cfg.run, "run"), build(PpoConfig, cfg.agent)
        env_config, reward = build(EnvConfig, cfg.env, "env"), build(RewardConfig, cfg.reward)
        ray = build(RayConfig, cfg.ray) if "ray" in cfg else None
        trace = build(TraceOverride, cfg.get("trace") or {}, "trace")
        run_scenarios(run, trace)  # a bad scenario, trace file or trace.tenant is named here, not in a worker
    except (PermanentError, TypeError) as error:
        raise SystemExit(f"disaggpilot train: {error}") from None
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    log_resolved_config("train", cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        bundle = train(run, ppo, env_config, reward, run_dir, config_yaml, ray, trace)
    except RayUnavailableError as error:  # Ray missing, or no cluster at ray.address
        raise SystemExit(f"disaggpilot train: {error}") from None
    print(f"policy bundle: {bundle.path} (sha256 {bundle.content_hash[:16]}...)")
    print(f"TensorBoard logs: {run_dir / 'tensorboard'}")
    objective = sweep_objective(bundle.manifest.get("validations", []))
    log.info("sweep objective (validation M tokens/$ subject to attainment): %.6f", objective)
    return objective
