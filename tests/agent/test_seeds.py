"""``agent.seeds``: evaluation seeds held out from training, validation and the shipped configs."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from disaggpilot.agent.seeds import EVALUATION_SEEDS, require_held_out, training_reset_seeds
from disaggpilot.agent.training.config import RunConfig
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.errors import ConfigError


def test_training_reset_seeds_follow_the_run_seed() -> None:
    assert training_reset_seeds(0, 2) == {0, 1}
    assert training_reset_seeds(3, 2) == {3, 4, 3000, 3001}


def test_overlap_is_refused_naming_each_key_and_seed() -> None:
    require_held_out({"run.validation_seeds": [1000, 1001], "run.seed": {0, 1}})
    with pytest.raises(ConfigError, match=r"run.validation_seeds uses \[101\]") as error:
        require_held_out({"run.validation_seeds": [1000, 101], "run.seed": {0, 1}})
    assert "run.seed" not in str(error.value)


def test_a_training_run_on_evaluation_seeds_is_refused() -> None:
    RunConfig(seed=0, n_envs=8, validation_seeds=[1000, 1001])
    with pytest.raises(ConfigError, match=r"run\.validation_seeds"):
        RunConfig(validation_seeds=[1000, 102])
    with pytest.raises(ConfigError, match=r"run.seed uses \[100, 101\]"):
        RunConfig(seed=99, n_envs=3)


def test_shipped_training_config_stays_off_the_evaluation_seeds() -> None:
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name="test_seeds"):
        run = compose(config_name="train").run
    RunConfig(**{key: run[key] for key in ("seed", "n_envs", "validation_seeds")})
    static_tuned = compose_policy("static_tuned")
    assert not set(static_tuned.calibration_seeds) & set(EVALUATION_SEEDS)


def compose_policy(name: str):  # type: ignore[no-untyped-def]
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir() / "policy"), job_name="test_seeds"):
        return compose(config_name=name)
