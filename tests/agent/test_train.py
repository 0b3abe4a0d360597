"""`disaggpilot train` end to end with a tiny budget, in a subprocess; resume from its checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.training.config import PpoConfig, RunConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = ["run.total_timesteps=96", "run.n_envs=2", "agent.n_steps=48", "agent.batch_size=48", "agent.n_epochs=1",
        "run.eval_every_steps=96", "run.checkpoint_every_steps=96", "run.validation_horizon_s=120",
        "run.scenarios=[steady]", "run.validation_scenarios=[steady]", "run.progress_bar=false"]


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", *TINY, *overrides,
               f"hydra.run.dir={tmp_path}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_writes_a_verified_bundle_and_logs_and_resumes(tmp_path: Path) -> None:
    first = train(tmp_path / "first")
    assert first.returncode == 0, first.stderr[-3000:]
    bundle = load_bundle(tmp_path / "first" / "bundle")
    assert bundle.spec["action_nvec"] == [5, 5, 4, 5]
    # The budget ends on a validation step: the final model is judged once, not twice.
    assert [v["steps"] for v in bundle.manifest["validations"]] == [96]
    assert "policy bundle:" in first.stdout
    events = list((tmp_path / "first" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    assert "resolved config" in (tmp_path / "first" / "train.log").read_text()
    resumed = train(tmp_path / "second", f"run.resume_from={tmp_path / 'first' / 'checkpoints' / 'latest'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_bundle(tmp_path / "second" / "bundle").content_hash


def test_bad_training_settings_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(PolicyConfigError, match=r"run\.vec_env"):
        RunConfig(vec_env="threads")
    with pytest.raises(PolicyConfigError, match=r"agent\.gamma"):
        PpoConfig(gamma=1.5)
    result = train(tmp_path, "run.n_envs=0")
    assert result.returncode != 0
    assert "run.n_envs=0 is invalid" in result.stdout + result.stderr


@pytest.mark.slow
def test_hydra_multirun_sweeps_write_one_bundle_per_job(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", "-m", *TINY,
               "run.n_envs=1", "run.eval_every_steps=0", "run.checkpoint_every_steps=0",
               "agent.learning_rate=0.0001,0.0003", f"hydra.sweep.dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = {load_bundle(tmp_path / str(job) / "bundle").content_hash for job in (0, 1)}
    assert len(hashes) == 2
