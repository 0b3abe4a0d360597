"""One evaluation episode: a policy on ``DisaggClusterEnv`` for one scenario and seed, driven by targets.

Every policy runs through ``DisaggClusterEnv.step_targets``, so all of them face the same scenario,
randomisation draw, request stream (all three follow from the seed), bounds, GPU budget and reward.
An episode is self-contained (it builds its own policy and environment from picklable settings), so it runs
the same in the calling process or in a worker process.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.evaluation.policies import PolicySpec, build_policy
from disaggpilot.agent.evaluation.records import EpisodeTrace, StepRecord, results_row, timeline
from disaggpilot.agent.policy import Policy, PolicyContext, environment_for, sees_future
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig


@dataclass(frozen=True)
class EpisodeTask:
    """One (policy, scenario, seed) cell of an evaluation; plain picklable data.

    Attributes:
        index: position in the evaluation's task list (results are reported in this order).
        policy: the policy's config.
        scenario: the scenario as configured (the environment randomises it per seed when asked).
        seed: the episode seed given to ``env.reset``.
        env: environment settings, identical for every policy.
        reward: reward settings, identical for every policy.
        prepares: whether the policy has a ``prepare``/``search`` hook (a hindsight search: a long task,
            which a worker pool starts first so that it does not finish last).
    """

    index: int
    policy: PolicySpec
    scenario: ScenarioConfig
    seed: int
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    prepares: bool = False

    @property
    def label(self) -> str:
        """``policy=<name> scenario=<name> seed=<seed>``, for messages."""
        return f"policy={self.policy.name} scenario={self.scenario.name} seed={self.seed}"


@dataclass
class EpisodeResult:
    """What an episode reports back: its results row and timeline, or the error that stopped it.

    Attributes:
        index: the task's index.
        policy: the policy's config name.
        scenario: the scenario's name.
        seed: the episode seed.
        row: the ``results.csv`` row (empty on error).
        timeline: one record per interval (empty on error).
        error: the failure's traceback text, or None.
    """

    index: int
    policy: str
    scenario: str
    seed: int
    row: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def has_prepare_hook(policy: Policy) -> bool:
    """Whether :func:`prepare` calls anything on ``policy``."""
    return callable(getattr(policy, "prepare", None)) or callable(getattr(policy, "search", None))


def prepare(policy: Policy, task: EpisodeTask) -> float:
    """Let a policy that needs the episode before it starts see it; returns the wall time spent (seconds).

    Two hooks are recognised, both called before ``env.reset``:

    - ``prepare(scenario, seed, env_config, reward_config)``: the generic hook;
    - ``search(scenario, seed, env_config)``: ``static_oracle``'s hindsight search of the same episode.

    ``scenario`` is the one the environment is built with (before randomisation): replaying
    ``DisaggClusterEnv(scenario, config=env_config).reset(seed=seed)`` reproduces the evaluated episode.
    """
    started = time.perf_counter()
    hook = getattr(policy, "prepare", None)
    search = getattr(policy, "search", None)
    if callable(hook):
        hook(task.scenario, task.seed, task.env, task.reward)
    elif callable(search):
        search(task.scenario, task.seed, task.env)
    else:
        return 0.0
    return time.perf_counter() - started


def policy_context(env: DisaggClusterEnv, spec: PolicySpec) -> PolicyContext:
    """What the policy may know before the episode; the true requests only for a ``sees_future`` policy."""
    requests = None
    if spec.sees_future:
        requests = getattr(env.backend, "requests", None)
        if requests is None:
            raise PolicyConfigError(f"policies.{spec.name}.sees_future=true needs a backend that knows the episode's "
                              f"requests (the simulator); {type(env.backend).__name__} does not")
    return PolicyContext(scenario=env.world, interval_s=env.config.interval_s, requests=requests,
                         feature_names=list(env.observer.names))


StepObserver = Callable[[DisaggClusterEnv, np.ndarray, float, dict[str, Any]], None]
"""Called after every step with (env, the observation the policy acted on, the step's reward, its info);
``env.history[-2]`` is the snapshot the policy saw and ``env.history[-1]`` the interval it produced."""


def play(policy: Policy, task: EpisodeTask, on_step: StepObserver | None = None) -> EpisodeTrace:
    """Run ``policy`` for one episode of ``task`` until the environment truncates it.

    Args:
        policy: a built policy; it is prepared (when it has a hook) and reset for the episode.
        task: the scenario, seed and settings.
        on_step: an observer of every step (the behaviour notebooks keep the observations with it).
    """
    env = DisaggClusterEnv(task.scenario, config=environment_for(policy, task.env), reward=task.reward)
    try:
        prepare_wall = prepare(policy, task)
        started = time.perf_counter()
        observation, _ = env.reset(seed=task.seed)
        policy.reset(policy_context(env, task.policy))
        trace = EpisodeTrace(world=env.world, roles=env.codec.roles, prepare_wall_s=prepare_wall)
        done = False
        while not done:
            acted_on = observation
            observation, reward, terminated, truncated, info = env.step_targets(policy.act(observation, env.history))
            if on_step is not None:
                on_step(env, acted_on, reward, info)
            trace.snapshots.append(env.history[-1])
            trace.steps.append(StepRecord(reward=reward, scaled=int(info["action/replicas_changed"]) > 0))
            done = terminated or truncated
        trace.wall_s = time.perf_counter() - started
        notes = getattr(policy, "episode_notes", None)
        trace.notes = dict(notes()) if callable(notes) else {}
        return trace
    finally:
        env.close()


def run_episode(task: EpisodeTask) -> EpisodeResult:
    """Build the task's policy, play the episode and summarise it; raises what the policy or env raise."""
    policy = build_policy(task.policy.name, task.policy)
    trace = play(policy, task)
    row = results_row(task.policy.name, task.policy.kind, task.scenario.name, task.seed, trace,
                      sees_future=sees_future(policy) or task.policy.sees_future)
    return EpisodeResult(task.index, task.policy.name, task.scenario.name, task.seed, row, timeline(trace))


def run_episode_safely(task: EpisodeTask) -> EpisodeResult:
    """:func:`run_episode`, with any exception reported in the result instead of raised (for workers)."""
    try:
        return run_episode(task)
    except Exception:  # one failed episode must not lose the others' results
        return EpisodeResult(task.index, task.policy.name, task.scenario.name, task.seed,
                             error=traceback.format_exc())
