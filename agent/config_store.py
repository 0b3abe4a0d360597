"""The agent's Hydra structured-config schemas: the settings dataclasses ``train`` and ``evaluate`` compose.

Registered beside the environment's (``env.config_store``), in the same ``schema`` group, so that a config
yaml opts in through its defaults list (``configs/agent/ppo.yaml`` starts with ``/schema/agent@_here_``) and
OmegaConf type-checks it and every override, refusing unknown keys.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

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
