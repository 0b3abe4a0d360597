"""Sweeps: the example Optuna sweep composes, its objective ranks runs by tokens per dollar subject to
attainment, and a tiny Optuna search runs every trial as a Ray task (``hydra/launcher=ray_tasks``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.train import sweep_objective
from disaggpilot.env.catalog import configs_dir

ROOT = Path(__file__).resolve().parents[2]
TINY = ["run.total_timesteps=96", "run.n_envs=1", "agent.n_steps=48", "agent.batch_size=48", "agent.n_epochs=1",
        "run.eval_every_steps=96", "run.checkpoint_every_steps=0", "run.validation_horizon_s=120",
        "run.scenarios=[steady]", "run.validation_scenarios=[steady]", "run.progress_bar=false"]


def test_the_example_sweep_searches_ppo_and_reward_settings_with_optuna_on_ray() -> None:
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        cfg = compose("train", overrides=["+sweep=ppo_reward"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.launcher._target_.endswith("RayTasksLauncher")
    params = set(cfg.hydra.sweeper.params)
    assert {"agent.learning_rate", "agent.ent_coef", "reward.slo_penalty", "reward.switching_cost"} <= params
    assert cfg.run.vec_env == "subproc" and cfg.run.eval_every_steps > 0


def test_the_objective_prefers_any_run_that_meets_its_targets() -> None:
    feasible = [{"tokens_per_usd": 2.0e6, "shortfall": 0.0}, {"tokens_per_usd": 3.0e6, "shortfall": 0.02}]
    assert sweep_objective(feasible) == pytest.approx(2.0)  # the higher tokens/$ missed a target: not counted
    short = [{"tokens_per_usd": 9.0e6, "shortfall": 0.05}, {"tokens_per_usd": 8.0e6, "shortfall": 0.01}]
    assert sweep_objective(short) == pytest.approx(-1.01)
    assert sweep_objective(short) < sweep_objective([{"tokens_per_usd": 1.0, "shortfall": 0.0}])
    assert sweep_objective([]) == -1e9


@pytest.mark.slow
def test_an_optuna_search_runs_its_trials_as_ray_tasks(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", "-m", "+sweep=ppo_reward",
               *TINY, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.launcher.num_cpus=2",
               "hydra.launcher.timeout_s=300", f"hydra.sweep.dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=420,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "launching 2 jobs as Ray tasks" in result.stdout + result.stderr
    summary = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    objectives = [sweep_objective(load_bundle(tmp_path / str(job) / "bundle").manifest["validations"])
                  for job in (0, 1)]
    assert summary["best_value"] == pytest.approx(max(objectives))
    assert {"agent.learning_rate", "reward.slo_penalty"} <= set(summary["best_params"])
