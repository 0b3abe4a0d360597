"""``vec_env=ray``: rollouts in Ray actors on a real local Ray (2 CPUs, fractional CPUs per actor).

The trajectories equal ``SubprocVecEnv``'s for the same seeds and actions; a killed actor is restarted, its
episodes reset and the step reports them truncated; a short PPO training survives a kill and says so in its
log and its metrics; ``disaggpilot train vec_env=ray`` joins an existing cluster by ``ray.address``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecNormalize

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.ray_cluster import RayConfig, RayUnavailableError, RayWorkerError, check_reachable
from disaggpilot.agent.training.callbacks import ActorRestartCallback
from disaggpilot.agent.training.ray_vec_env import RESTARTED, RayVecEnv, actor_groups
from disaggpilot.agent.training.runner import make_env_factory
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.reward import RewardConfig
from tests.env.sim.conftest import small_scenario

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120.0
"""Longest wait for any one answer from Ray in these tests (seconds)."""
SETTINGS = RayConfig(cpus_per_worker=0.5, timeout_s=TIMEOUT_S)
"""Half a CPU per actor: four actors fit the tests' 2-CPU Ray."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """One local Ray for the module (2 CPUs, no dashboard, no usage report); its GCS address; shut down after."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def factories(count: int, duration_s: float = 300.0) -> list[Any]:
    """``count`` training-environment constructors on the small two-tenant scenario (10 steps per episode)."""
    scenario = small_scenario(duration_s=duration_s)
    return [make_env_factory([scenario], EnvConfig(), RewardConfig(), 100 + rank) for rank in range(count)]


def rollout(vec: VecEnv, steps: int) -> list[tuple[Any, ...]]:
    """Seed, reset and step ``vec`` with fixed pseudo-random actions; the masks, and what each step returned."""
    vec.seed(7)
    first = vec.reset()
    actions = np.random.default_rng(0)
    nvec = np.asarray(getattr(vec.action_space, "nvec"))  # noqa: B009  (a MultiDiscrete space)
    records: list[tuple[Any, ...]] = [(first,)]
    for _ in range(steps):
        masks = np.stack(vec.env_method("action_masks"))
        observation, reward, done, info = vec.step(actions.integers(0, nvec, size=(vec.num_envs, len(nvec))))
        records.append((masks, observation, reward, done, info))
    return records


def without_wall_time(value: Any) -> Any:
    """An info value without Monitor's episode wall time (``episode["t"]``, seconds since the env started)."""
    return {k: v for k, v in value.items() if k != "t"} if isinstance(value, dict) else value


def test_actors_host_consecutive_environments() -> None:
    assert actor_groups(5, 2) == [[0, 1], [2, 3], [4]]
    assert actor_groups(2, 4) == [[0, 1]]


def test_bad_ray_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"ray\.cpus_per_worker=0 is invalid"):
        RayConfig(cpus_per_worker=0)
    with pytest.raises(ConfigError, match=r"ray\.envs_per_actor=0 is invalid"):
        RayConfig(envs_per_actor=0)


def test_an_address_where_nothing_listens_fails_fast() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RayUnavailableError, match=rf"ray\.address='127\.0\.0\.1:{port}': nothing answers"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=5.0)
    check_reachable("auto", timeout_s=5.0)  # left to Ray


@pytest.mark.slow
def test_ray_rollouts_equal_subprocess_rollouts(local_ray: str) -> None:
    fns = factories(2)
    on_ray = RayVecEnv(fns, RayConfig(cpus_per_worker=0.5, envs_per_actor=2, timeout_s=TIMEOUT_S))  # one actor
    in_subprocesses = SubprocVecEnv(fns)
    try:
        ours, theirs = rollout(on_ray, 25), rollout(in_subprocesses, 25)
    finally:
        on_ray.close()
        in_subprocesses.close()
    assert np.array_equal(ours[0][0], theirs[0][0])
    for (masks, observation, reward, done, info), expected in zip(ours[1:], theirs[1:], strict=True):
        for value, reference in zip((masks, observation, reward, done), expected[:4], strict=True):
            assert value.dtype == reference.dtype and np.array_equal(value, reference)
        for got, want in zip(info, expected[4], strict=True):
            assert got.keys() == want.keys()
            assert all(np.array_equal(without_wall_time(got[key]), without_wall_time(want[key])) for key in want)
    assert sum(int(step[3].sum()) for step in ours[1:]) == 4  # two automatic resets per environment


@pytest.mark.slow
def test_a_killed_actor_is_restarted_and_its_episodes_reset(local_ray: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    vec = RayVecEnv(factories(2), RayConfig(cpus_per_worker=0.5, timeout_s=TIMEOUT_S, max_restarts=1))
    idle = np.zeros((2, 4), dtype=np.int64)
    try:
        vec.seed(3)
        before = np.asarray(vec.reset())
        first_pids = vec.actor_pids()
        os.kill(first_pids[0], signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="disaggpilot.train"):
            observation, reward, done, info = vec.step(idle)
        assert done.tolist() == [True, False] and reward[0] == 0.0
        assert info[0][RESTARTED] == 1 and info[0]["TimeLimit.truncated"] is True
        assert np.array_equal(info[0]["terminal_observation"], before[0])
        assert RESTARTED not in info[1]
        assert vec.restart_count == 1 and "rollout actor 0 (environments [0]) died" in caplog.text
        new_pids = vec.actor_pids()
        assert new_pids[0] != first_pids[0] and new_pids[1] == first_pids[1]
        assert np.asarray(vec.step(idle)[0]).shape == np.asarray(observation).shape
        os.kill(new_pids[0], signal.SIGKILL)  # a second death is one more than ray.max_restarts=1 allows
        with pytest.raises(RayWorkerError, match=r"died 2 times, more than ray\.max_restarts=1"):
            vec.step(idle)
    finally:
        vec.close()


class KillActorAt(BaseCallback):
    """Kills the first rollout actor's process once, at the given environment step."""

    def __init__(self, vec: RayVecEnv, at_step: int) -> None:
        super().__init__()
        self.vec, self.at_step, self.done = vec, at_step, False

    def _on_step(self) -> bool:
        if not self.done and self.num_timesteps >= self.at_step:
            os.kill(self.vec.actor_pids()[0], signal.SIGKILL)
            self.done = True
        return True


@pytest.mark.slow
def test_short_ppo_training_survives_a_killed_actor(local_ray: str, tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    vec = RayVecEnv(factories(1), SETTINGS)
    model = MaskablePPO("MlpPolicy", VecNormalize(vec), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    try:
        model.learn(total_timesteps=64, callback=CallbackList([ActorRestartCallback(), KillActorAt(vec, 20)]))
    finally:
        vec.close()
    assert model.num_timesteps == 64 and vec.restart_count == 1
    header, *rows = (tmp_path / "progress.csv").read_text().splitlines()
    column = header.split(",").index("ray/actor_restarts")
    assert [row.split(",")[column] for row in rows][-1] == "1"


@pytest.mark.slow
def test_train_command_with_vec_env_ray_joins_the_cluster_and_writes_a_bundle(local_ray: str,
                                                                                tmp_path: Path) -> None:
    tiny = ["run.total_timesteps=96", "run.n_envs=1", "agent.n_steps=48", "agent.batch_size=48",
            "agent.n_epochs=1", "run.eval_every_steps=96", "run.checkpoint_every_steps=0",
            "run.validation_horizon_s=120", "run.scenarios=[steady]", "run.validation_scenarios=[steady]",
            "run.progress_bar=false"]
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", *tiny, "vec_env=ray",
               f"ray.address={local_ray}", "ray.cpus_per_worker=0.5", f"ray.timeout_s={TIMEOUT_S}",
               f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_bundle(tmp_path / "bundle").manifest["validations"]
    log_text = (tmp_path / "train.log").read_text()
    assert f"ray: {local_ray}" in log_text and "vec_env: ray" in log_text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (tmp_path / "tensorboard").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert {event.value for event in accumulator.Scalars("ray/actor_restarts")} == {0.0}  # one per rollout
