"""Training on a trace window: the environments replay it for one tenant; ``trace.*`` errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.evaluation.scenarios import TraceOverride
from disaggpilot.agent.training.config import RunConfig
from disaggpilot.agent.training.runner import make_env_factory, run_scenarios
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.reward import RewardConfig

ROOT = Path(__file__).resolve().parents[3]
# one conv request every 2 s for 10 minutes, and rows of another label that the replay must skip
STAMPS = np.arange(0.0, 600.0, 2.0)


@pytest.fixture
def native_trace(tmp_path: Path) -> Path:
    path = tmp_path / "ops.csv"
    rows = [line for t in STAMPS for line in (f"{t:.1f},conv,{300 + int(t)},40", f"{t + 1:.1f},other,500,50")]
    path.write_text("timestamp_s,tenant,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    return path


def test_the_training_and_validation_tenants_replay_the_trace_window(native_trace: Path) -> None:
    trace = TraceOverride(path=str(native_trace), tenant="conv", start_s=100.0, end_s=300.0)
    training, validation = run_scenarios(RunConfig(scenarios=["steady"], validation_scenarios=["steady"]), trace)
    assert [s.name for s in training] == [s.name for s in validation] == ["steady+ops"]
    environment = make_env_factory(training, EnvConfig(horizon_s=600.0), RewardConfig(), seed=7)().unwrapped
    batch = environment.backend.requests  # type: ignore[attr-defined]
    conv = batch.tenant == batch.tenant_names.index("conv")
    window = STAMPS[(STAMPS >= 100.0) & (STAMPS < 300.0)]
    assert conv.sum() == len(window) == 100
    # arrivals are the window's, shifted to the episode's start, with the trace's prompt lengths
    np.testing.assert_allclose(batch.arrival_s[conv], window - 100.0)
    np.testing.assert_array_equal(batch.prompt_tokens[conv], 300 + window.astype(int))
    assert (batch.tenant == batch.tenant_names.index("code")).sum() > 100  # the other tenant is still sampled


def test_without_a_trace_the_scenarios_are_the_named_ones() -> None:
    training, validation = run_scenarios(RunConfig(scenarios=["steady", "diurnal"], validation_scenarios=["steady"]))
    assert [s.name for s in training] == ["steady", "diurnal"] and [s.name for s in validation] == ["steady"]
    assert all(t.trace is None for s in training for t in s.tenants)


def test_a_tenant_the_scenario_lacks_is_named(native_trace: Path) -> None:
    with pytest.raises(ConfigError, match=r"trace\.tenant='chat' is not a tenant of scenario 'steady'"):
        run_scenarios(RunConfig(), TraceOverride(path=str(native_trace), tenant="chat"))


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", *overrides,
               f"hydra.run.dir={tmp_path}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("override", "message"), [
    ("trace.bogus=1", "trace.bogus is not a setting here"),
    ("trace.format=xml", "trace.format='xml' is invalid: use one of"),
    ("trace.end_s=-3", "trace.end_s=-3.0 is invalid: use an end > start_s=0.0"),
    ("trace.tenant=chat", "trace.tenant='chat' is not a tenant of scenario 'steady'"),
])
def test_bad_trace_settings_give_one_line(tmp_path: Path, native_trace: Path, override: str, message: str) -> None:
    result = train(tmp_path, f"trace.path={native_trace}", "run.scenarios=[steady]", override)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[0].startswith("disaggpilot train: ") and message in lines[0], lines


@pytest.mark.slow
def test_train_on_a_trace_window_writes_a_bundle(tmp_path: Path, native_trace: Path) -> None:
    result = train(tmp_path, f"trace.path={native_trace}", "trace.tenant=conv", "trace.start_s=60",
                   "trace.end_s=420", "run.total_timesteps=48", "run.n_envs=1", "agent.n_steps=24",
                   "agent.batch_size=24", "agent.n_epochs=1", "env.horizon_s=360", "run.validation_horizon_s=360",
                   "run.validation_seeds=[1000]", "run.eval_every_steps=48", "run.checkpoint_every_steps=0",
                   "run.scenarios=[steady]", "run.validation_scenarios=[steady]", "run.progress_bar=false")
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.manifest["trained_steps"] == 48
    assert [v["steps"] for v in bundle.manifest["validations"]] == [48]
    assert str(native_trace) in (tmp_path / "bundle" / "config.yaml").read_text()  # the recipe travels with it
