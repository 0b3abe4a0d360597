"""The agent's Hydra structured-config schemas: the settings dataclasses ``train`` and ``evaluate`` compose.

Each policy kind's settings (``agent.baselines.SETTINGS``; ``PpoPolicy``'s keyword arguments) are stored as
``/schema/policy/<kind>``, their defaults as an untyped node (``env.structured.defaults_node``): a file of
``configs/policy/`` starts from them and states only what it changes, and ``policies.<name>.<setting>=...``
overrides any setting; the policy's settings dataclass checks the values.

Registered beside the environment's (``env.config_store``), in the same ``schema`` group, so that a config
yaml opts in through its defaults list (``configs/agent/ppo.yaml`` starts with ``/schema/agent@_here_``) and
OmegaConf type-checks it and every override, refusing unknown keys.
"""

from __future__ import annotations

import inspect

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from disaggpilot.agent.baselines import SETTINGS
from disaggpilot.agent.evaluation.scenarios import TraceOverride
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.agent.ray_cluster import RayConfig
from disaggpilot.agent.training.config import PpoConfig, RunConfig
from disaggpilot.env.config_store import SCHEMA_GROUP
from disaggpilot.env.config_store import register_configs as register_env_configs
from disaggpilot.env.structured import defaults_node


def register_configs() -> None:
    """Store the agent's schemas, and the environment's, in Hydra's ``ConfigStore``; call before composing
    (idempotent)."""
    register_env_configs()
    store = ConfigStore.instance()
    store.store(group=SCHEMA_GROUP, name="agent", node=PpoConfig)
    store.store(group=SCHEMA_GROUP, name="run", node=defaults_node(RunConfig))
    store.store(group=SCHEMA_GROUP, name="ray", node=RayConfig)
    store.store(group=SCHEMA_GROUP, name="trace", node=defaults_node(TraceOverride))
    for kind in [*SETTINGS, "ppo"]:
        store.store(group=f"{SCHEMA_GROUP}/policy", name=kind, node=policy_defaults(kind))


def policy_defaults(kind: str) -> DictConfig:
    """The settings of policy ``kind`` with their defaults: what a ``configs/policy/`` file starts from."""
    if kind == "ppo":
        return keyword_defaults(PpoPolicy, skip=("name",))
    return defaults_node(SETTINGS[kind])


def keyword_defaults(policy: type, skip: tuple[str, ...] = ()) -> DictConfig:
    """A policy class's keyword arguments and their defaults (``???`` for a required one), for a policy whose
    settings are its constructor's arguments rather than a dataclass: its config file then states no default."""
    parameters = inspect.signature(policy).parameters.values()
    return OmegaConf.create({p.name: "???" if p.default is inspect.Parameter.empty else p.default
                             for p in parameters if p.name not in skip})
