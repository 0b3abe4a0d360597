"""``disaggpilot train``: MaskablePPO on the simulator, from Hydra configs; writes a policy bundle.

Examples::

    disaggpilot train run.total_timesteps=20000
    disaggpilot train -m agent.learning_rate=0.0001,0.0003 run.seed=0,1     # a sweep (Hydra multirun)
    disaggpilot train run.resume_from=outputs/train/<run>/checkpoints/latest
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agent.errors import PermanentError as AgentPermanentError
from agent.training.config import PpoConfig, RunConfig
from env.catalog import configs_dir
from env.cluster_env import EnvConfig
from env.errors import PermanentError as EnvPermanentError
from env.reward import RewardConfig

log = logging.getLogger("disaggpilot.train")


def _container(node: Any) -> dict[str, Any]:
    raw = OmegaConf.to_container(node, resolve=True)
    assert isinstance(raw, dict)
    return {str(key): value for key, value in raw.items()}


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    """Entry point of ``disaggpilot train``."""
    from agent.training.runner import train  # deferred: imports torch

    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    log.info("resolved config:\n%s", config_yaml)
    try:
        run, ppo = RunConfig(**_container(cfg.run)), PpoConfig(**_container(cfg.agent))
        env_config, reward = EnvConfig(**_container(cfg.env)), RewardConfig(**_container(cfg.reward))
    except (AgentPermanentError, EnvPermanentError, TypeError) as error:
        raise SystemExit(f"disaggpilot train: {error}") from None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    bundle = train(run, ppo, env_config, reward, run_dir, config_yaml)
    print(f"policy bundle: {bundle.path} (sha256 {bundle.content_hash[:16]}...)")
    print(f"TensorBoard logs: {run_dir / 'tensorboard'}")
