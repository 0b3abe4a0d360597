"""What an evaluation runs: policies × scenarios × seeds under one environment and reward.

:class:`EvaluationPlan` is the library's entry (tests and notebooks build one directly);
:func:`plan_from_config` builds it from the composed ``configs/evaluate.yaml``.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from disaggpilot.agent.evaluation.episode import EpisodeTask, has_prepare_hook
from disaggpilot.agent.evaluation.policies import PolicySpec, build_policy
from disaggpilot.agent.evaluation.scenarios import ScenarioEntry, TraceOverride, resolve_scenarios
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError, require, require_seconds, require_seeds
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.structured import build


@dataclass
class EvaluationPlan:
    """Policies × scenarios × seeds, every episode under the same environment and reward settings.

    Validated at construction: every policy is built once (unknown kinds and bad settings fail here, naming
    ``policies.<name>``, before any episode runs).

    Attributes:
        policies: policy name → config (``kind``, optional ``sees_future``, the policy's settings).
        scenarios: the scenarios (already shortened or trace-driven as wanted); names must be unique.
        seeds: episode seeds (integers >= 0); every policy sees the same ones.
        env: environment settings (control interval, action levels, randomisation).
        reward: reward settings (reported as ``total_reward``).
        jobs: worker processes; 1 runs in-process, 0 uses every CPU.
        start_method: how workers start: ``spawn``, ``forkserver`` or ``fork``.
    """

    policies: Mapping[str, Mapping[str, Any] | PolicySpec]
    scenarios: Sequence[ScenarioConfig]
    seeds: Sequence[int] = (0,)
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    jobs: int = 1
    start_method: str = "spawn"
    specs: list[PolicySpec] = field(init=False)
    """The parsed policy configs, in order."""
    preparing: set[str] = field(init=False)
    """Names of the policies with a ``prepare``/``search`` hook (searched before their episodes)."""

    def __post_init__(self) -> None:
        seeds = list(self.seeds)
        valid = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        require(len(seeds) > 0 and valid, "seeds", seeds, "list integers >= 0, e.g. seeds=[0,1,2]")
        require(len(set(seeds)) == len(seeds), "seeds", seeds, "list each seed once")
        names = [scenario.name for scenario in self.scenarios]
        require(len(names) > 0, "scenarios", names, "list at least one scenario")
        require(len(set(names)) == len(names), "scenarios", names, "give scenarios unique names")
        require(isinstance(self.jobs, int) and self.jobs >= 0, "jobs", self.jobs,
                "use worker processes >= 1 (1 runs in-process; 0: every CPU)")
        methods = multiprocessing.get_all_start_methods()
        require(self.start_method in methods, "start_method", self.start_method, f"use one of {methods}")
        require(len(self.policies) > 0, "policies", dict(self.policies), "configure at least one policy")
        self.specs = [spec if isinstance(spec, PolicySpec) else PolicySpec.from_config(name, spec)
                      for name, spec in self.policies.items()]
        self.preparing = {spec.name for spec in self.specs if has_prepare_hook(build_policy(spec.name, spec))}

    def describe(self) -> list[str]:
        """Markdown lines naming what was run: policies, scenarios, seeds, episode length, interval."""
        lengths = sorted({self.env.horizon_s or scenario.duration_s for scenario in self.scenarios})
        return [f"- policies: {', '.join(f'{s.name} ({s.kind})' for s in self.specs)}",
                f"- scenarios: {', '.join(scenario.name for scenario in self.scenarios)}",
                f"- seeds: {', '.join(str(seed) for seed in self.seeds)}",
                f"- episode length: {', '.join(f'{length:g}' for length in lengths)} s simulated, "
                f"control interval {self.env.interval_s:g} s"]

    def tasks(self) -> list[EpisodeTask]:
        """One task per (scenario, policy, seed), in that nesting order."""
        cells = itertools.product(self.scenarios, self.specs, self.seeds)
        return [EpisodeTask(index=i, policy=spec, scenario=scenario, seed=int(seed), env=self.env, reward=self.reward,
                            prepares=spec.name in self.preparing)
                for i, (scenario, spec, seed) in enumerate(cells)]


def _plain(node: Any) -> Any:
    """A resolved plain container of an OmegaConf node; other values as they are."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def select_policies(policies: Mapping[str, Any], only: Sequence[str] | None) -> dict[str, Any]:
    """``policies`` restricted to the names in ``only`` (all when None), in ``only``'s order."""
    if only is None:
        return dict(policies)
    unknown = [name for name in only if name not in policies]
    if unknown:
        raise ConfigError(f"only={list(only)!r} names policies that are not configured: {unknown}; configured: "
                          f"{sorted(policies)} (add one with +policy@policies.<name>=<config>)")
    return {name: policies[name] for name in only}


def plan_from_config(cfg: DictConfig) -> EvaluationPlan:
    """The plan of a composed ``configs/evaluate.yaml``.

    Raises:
        ConfigError: an unknown policy kind or scenario, or a bad setting; the message names the key.
    """
    policies = _plain(cfg.policies) or {}
    if not isinstance(policies, dict):
        raise ConfigError(f"policies={policies!r} is not a mapping of name -> policy config")
    only = _plain(cfg.get("only"))
    entries: list[ScenarioEntry] = list(_plain(cfg.scenarios) or [])
    trace = build(TraceOverride, _plain(cfg.get("trace")) or {}, "trace")
    duration = require_seconds("duration_s", cfg.get("duration_s"), optional=True,
                               fix="use a positive episode length in seconds, or null for each scenario's duration_s")
    env_settings = dict(_plain(cfg.env))
    if duration is not None:
        env_settings["horizon_s"] = None  # duration_s sets the episode length, whatever the env's horizon says
    return EvaluationPlan(
        policies=select_policies(policies, only),
        scenarios=resolve_scenarios(entries, duration, trace),
        seeds=require_seeds("seeds", _plain(cfg.seeds)),
        env=build(EnvConfig, env_settings, "env"), reward=build(RewardConfig, cfg.reward),
        jobs=cfg.jobs, start_method=str(cfg.get("start_method", "spawn")),
    )
