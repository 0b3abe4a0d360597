"""``RayVecEnv``: a stable-baselines3 ``VecEnv`` whose environments live in Ray actors (``vec_env=ray``).

Each actor hosts ``ray.envs_per_actor`` environments built by the same picklable factories a
``SubprocVecEnv`` gets; actors step in parallel, each steps its environments in turn and answers with one
stacked observation block, so a step costs one round trip per actor and one copy into the batch. With the
same factories, seeds and actions the trajectories equal ``SubprocVecEnv``'s: the same auto-reset, the same
``terminal_observation`` and ``TimeLimit.truncated`` entries, rewards and dones stacked the same way.

MaskablePPO asks for action masks before every step; an actor computes them after each step and reset and
sends them along, so that question costs no extra round trip (the cache is dropped whenever a call other
than ``action_masks`` could have changed an environment).

An actor that dies (its node lost, its process killed) is replaced: a fresh actor rebuilds its environments
and resets them with a seed derived from the run's seed, the environment index and the restart count. The
step that was lost reports each of its environments as truncated (reward 0, ``terminal_observation`` = the
last observation seen), so PPO does not bootstrap across the break; the info carries
``ray/actor_restarted``, the log says so and :attr:`RayVecEnv.restart_count` counts it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from disaggpilot.agent.ray_cluster import RayConfig, RayWorkerError, connect, import_ray
from disaggpilot.env.errors import require

log = logging.getLogger("disaggpilot.train")
EnvFactory = Callable[[], gymnasium.Env[Any, Any]]
MASKS = "action_masks"
RESTARTED = "ray/actor_restarted"
"""Info key set to 1 on the environments whose actor was replaced during the step."""


class EnvHost:
    """A Ray actor's body: a few environments, stepped in turn, answered as one stacked block."""

    def __init__(self, factories: Sequence[EnvFactory]) -> None:
        self.envs = [factory() for factory in factories]
        self.masked = all(callable(getattr(env.unwrapped, MASKS, None)) for env in self.envs)

    def spaces(self) -> tuple[gymnasium.Space[Any], gymnasium.Space[Any]]:
        """The first environment's observation and action spaces."""
        return self.envs[0].observation_space, self.envs[0].action_space

    def reset(self, seeds: Sequence[int | None], options: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
        """Reset every environment; (observations, reset infos, masks or None)."""
        results = [env.reset(seed=seed, **({"options": option} if option else {}))
                   for env, seed, option in zip(self.envs, seeds, options, strict=True)]
        return np.stack([obs for obs, _ in results]), [info for _, info in results], self._masks()

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        """Step every environment, resetting finished ones as ``SubprocVecEnv`` does."""
        results = [self._step_one(env, action) for env, action in zip(self.envs, actions, strict=True)]
        observations, rewards, dones, infos, reset_infos = zip(*results, strict=True)
        return np.stack(observations), list(rewards), list(dones), list(infos), list(reset_infos), self._masks()

    @staticmethod
    def _step_one(env: gymnasium.Env[Any, Any], action: np.ndarray) -> tuple[Any, Any, bool, dict[str, Any],
                                                                               dict[str, Any]]:
        observation, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info: dict[str, Any] = {}
        if done:
            info["terminal_observation"] = observation
            observation, reset_info = env.reset()
        return observation, reward, done, info, reset_info

    def _masks(self) -> list[np.ndarray] | None:
        return [env.get_wrapper_attr(MASKS)() for env in self.envs] if self.masked else None

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], local: Sequence[int]) -> list[Any]:
        """``env_method`` on the environments at ``local`` positions."""
        return [self.envs[i].get_wrapper_attr(name)(*args, **kwargs) for i in local]

    def get_attr(self, name: str, local: Sequence[int]) -> list[Any]:
        """An attribute of the environments at ``local`` positions."""
        return [self.envs[i].get_wrapper_attr(name) for i in local]

    def set_attr(self, name: str, value: Any, local: Sequence[int]) -> None:
        """Set an attribute on the environments at ``local`` positions."""
        for i in local:
            setattr(self.envs[i], name, value)

    def is_wrapped(self, wrapper: type[gymnasium.Wrapper[Any, Any, Any, Any]], local: Sequence[int]) -> list[bool]:
        """Whether the environments at ``local`` positions are wrapped with ``wrapper``."""
        return [is_wrapped(self.envs[i], wrapper) for i in local]

    def pid(self) -> int:
        """This actor's operating-system process id."""
        return os.getpid()

    def close(self) -> None:
        """Close every environment."""
        for env in self.envs:
            env.close()


def actor_groups(num_envs: int, per_actor: int) -> list[list[int]]:
    """Environment indices hosted by each actor, in order (the last actor may host fewer)."""
    return [list(range(start, min(start + per_actor, num_envs))) for start in range(0, num_envs, per_actor)]


def restart_seed(base: int | None, env_index: int, restarts: int) -> int | None:
    """The reset seed of an environment rebuilt after its actor's ``restarts``-th death (None: unseeded run)."""
    if base is None:
        return None
    return int(np.random.SeedSequence([base, env_index, restarts]).generate_state(1)[0])


class RayVecEnv(VecEnv):
    """Environments in Ray actors, stepped in parallel (see the module docstring).

    Args:
        env_fns: picklable constructors, one per environment (as for ``SubprocVecEnv``).
        config: where Ray runs, environments per actor, CPUs per actor, restarts and timeouts.
    """

    def __init__(self, env_fns: Sequence[EnvFactory], config: RayConfig) -> None:
        require(len(env_fns) >= 1, "run.n_envs", len(env_fns), "use >= 1 environment")
        self.config, self.restart_count, self.closed = config, 0, False
        self._owns_ray = connect(config)
        ray = import_ray()
        self._ray, self._timeout = ray, config.timeout_s
        self._groups = actor_groups(len(env_fns), config.envs_per_actor)
        self._factories = [[env_fns[i] for i in group] for group in self._groups]
        self._remote = ray.remote(EnvHost).options(num_cpus=config.cpus_per_worker, max_restarts=0)
        self.actors = [self._remote.remote(factories) for factories in self._factories]
        self._restarts = [0] * len(self.actors)
        self._base_seed: int | None = None
        self._pending: list[Any] | None = None
        self._masks: list[np.ndarray] | None = None
        self._last_obs: np.ndarray | None = None
        try:
            observation_space, action_space = self._get(self.actors[0].spaces.remote())
        except BaseException:  # the actors (and a Ray started here) must not outlive a failed construction
            self.close()
            raise
        require(isinstance(observation_space, gymnasium.spaces.Box | gymnasium.spaces.Discrete |
                           gymnasium.spaces.MultiDiscrete | gymnasium.spaces.MultiBinary),
                "run.vec_env", "ray", f"needs array observations, not {type(observation_space).__name__}")
        super().__init__(len(env_fns), observation_space, action_space)

    # ----- stepping
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """As ``VecEnv.seed`` (seed + index at the next reset); remembered for seeding restarted actors."""
        seeds = super().seed(seed)
        self._base_seed = seeds[0]
        return seeds

    def reset(self) -> VecEnvObs:
        """Reset every environment with the pending seeds and options (each used once)."""
        refs = [actor.reset.remote([self._seeds[i] for i in group], [self._options[i] for i in group])
                for actor, group in zip(self.actors, self._groups, strict=True)]
        answers = [self._answer(index, ref, self._reset_after_restart) for index, ref in enumerate(refs)]
        self.reset_infos = [info for _, infos, _ in answers for info in infos]
        self._reset_seeds()
        self._reset_options()
        self._keep_masks([masks for _, _, masks in answers])
        self._last_obs = np.concatenate([block for block, _, _ in answers])
        return self._last_obs

    def step_async(self, actions: np.ndarray) -> None:
        """Send each actor its environments' actions."""
        self._masks = None
        self._pending = [actor.step.remote(actions[group[0]:group[-1] + 1])
                         for actor, group in zip(self.actors, self._groups, strict=True)]

    def step_wait(self) -> VecEnvStepReturn:
        """Gather every actor's block; replace an actor that died (its environments report truncation)."""
        assert self._pending is not None, "step_wait() without step_async()"
        answers = [self._answer(index, ref, self._truncate_after_restart) for index, ref in enumerate(self._pending)]
        self._pending = None
        self.reset_infos = [info for answer in answers for info in answer[4]]
        self._keep_masks([answer[5] for answer in answers])
        self._last_obs = np.concatenate([answer[0] for answer in answers])
        rewards = np.array([reward for answer in answers for reward in answer[1]])
        dones = np.array([done for answer in answers for done in answer[2]])
        return self._last_obs, rewards, dones, [info for answer in answers for info in answer[3]]

    def _keep_masks(self, blocks: list[list[np.ndarray] | None]) -> None:
        self._masks = None if any(block is None for block in blocks) else [m for b in blocks if b for m in b]

    # ----- failures
    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref, timeout=self._timeout)
        except self._ray.exceptions.GetTimeoutError as error:
            raise RayWorkerError(f"no answer from a rollout actor within ray.timeout_s={self._timeout}; raise it "
                                 "or check the cluster", delay_s=self._timeout) from error

    def _answer(self, index: int, ref: Any, after_restart: Callable[[int], tuple[Any, ...]]) -> tuple[Any, ...]:
        try:
            answer: tuple[Any, ...] = self._get(ref)
            return answer
        except self._ray.exceptions.RayActorError as error:
            self._restart(index, error)
            return after_restart(index)

    def _restart(self, index: int, error: Exception) -> None:
        self._restarts[index] += 1
        self.restart_count += 1
        group = self._groups[index]
        if self._restarts[index] > self.config.max_restarts:
            raise RayWorkerError(f"rollout actor {index} (environments {group}) died {self._restarts[index]} times, "
                                 f"more than ray.max_restarts={self.config.max_restarts}: {error}") from error
        log.warning("rollout actor %d (environments %s) died (%s); restarted it (%d/%d), its episodes reset",
                    index, group, type(error).__name__, self._restarts[index], self.config.max_restarts)
        self._ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._remote.remote(self._factories[index])

    def _reset_after_restart(self, index: int) -> tuple[Any, ...]:
        seeds = [restart_seed(self._base_seed, i, self._restarts[index]) for i in self._groups[index]]
        return self._answer(index, self.actors[index].reset.remote(seeds, [{}] * len(seeds)),
                            self._reset_after_restart)

    def _truncate_after_restart(self, index: int) -> tuple[Any, ...]:
        block, reset_infos, masks = self._reset_after_restart(index)
        group = self._groups[index]
        terminal = self._last_obs[group] if self._last_obs is not None else block  # fancy indexing: a copy
        infos = [{"TimeLimit.truncated": True, "terminal_observation": obs, RESTARTED: 1} for obs in terminal]
        return block, [0.0] * len(group), [True] * len(group), infos, reset_infos, masks

    # ----- the rest of the VecEnv interface
    def _by_actor(self, indices: VecEnvIndices) -> list[tuple[int, list[int], list[int]]]:
        """(actor, local positions, global indices) for the requested environments, in request order."""
        wanted = list(self._get_indices(indices))
        plan = []
        for actor, group in enumerate(self._groups):
            chosen = [i for i in wanted if i in group]
            if chosen:
                plan.append((actor, [i - group[0] for i in chosen], chosen))
        return plan

    def _gather(self, indices: VecEnvIndices, send: Callable[[Any, list[int]], Any]) -> list[Any]:
        plan = self._by_actor(indices)
        answers = [self._get(send(self.actors[actor], local)) for actor, local, _ in plan]
        by_index = {i: value for (_, _, chosen), values in zip(plan, answers, strict=True)
                    for i, value in zip(chosen, values, strict=True)}
        return [by_index[i] for i in self._get_indices(indices)]

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call a method of the environments (action masks come from the step's answer when fresh)."""
        if method_name == MASKS and self._masks is not None and not method_args and not method_kwargs:
            return [self._masks[i] for i in self._get_indices(indices)]
        self._masks = None
        return self._gather(indices, lambda actor, local: actor.call.remote(method_name, method_args,
                                                                            method_kwargs, local))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of the environments."""
        return self._gather(indices, lambda actor, local: actor.get_attr.remote(attr_name, local))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on the environments."""
        self._masks = None
        self._gather(indices, lambda actor, local: actor.set_attr.remote(attr_name, value, local))

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper[Any, Any, Any, Any]],
                       indices: VecEnvIndices = None) -> list[bool]:
        """Whether the environments are wrapped with ``wrapper_class``."""
        return self._gather(indices, lambda actor, local: actor.is_wrapped.remote(wrapper_class, local))

    def actor_pids(self) -> list[int]:
        """The operating-system process id of each actor (for operators and tests)."""
        return [int(self._get(actor.pid.remote())) for actor in self.actors]

    def close(self) -> None:
        """Close the environments, end the actors, and stop Ray when this object started it."""
        if self.closed:
            return
        self.closed = True
        for actor in self.actors:
            try:
                self._ray.get(actor.close.remote(), timeout=self._timeout)
            except (self._ray.exceptions.RayError, RayWorkerError) as error:
                log.warning("closing a rollout actor failed: %s", error)
            self._ray.kill(actor, no_restart=True)
        if self._owns_ray:
            self._ray.shutdown()
