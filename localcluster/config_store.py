"""The load generator's Hydra schema, registered beside the environment's (``env.config_store``).

``configs/loadgen.yaml`` opts in through its defaults list (``/schema/loadgen@_here_``), so OmegaConf type-checks
it and every override against :class:`LoadgenAppConfig`, refusing unknown keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from disaggpilot.env.config_store import SCHEMA_GROUP
from disaggpilot.env.config_store import register_configs as register_env_configs
from disaggpilot.localcluster.loadgen_config import LoadgenConfig


@dataclass
class LoadgenAppConfig(LoadgenConfig):
    """The schema of ``configs/loadgen.yaml``: :class:`LoadgenConfig`'s fields, typed (so ``api_keys.<tenant>=``
    adds a key to the typed mapping and ``seed=abc`` is refused naming the key), plus the scenario."""

    scenario: Any = None
    """The scenario node (``scenario=<name>``), checked by the scenario schema."""


LOADGEN_SCHEMA = f"/{SCHEMA_GROUP}/loadgen@_here_"
"""The defaults-list entry of ``configs/loadgen.yaml``."""


def loadgen_schema() -> DictConfig:
    """:class:`LoadgenAppConfig` as a config whose ``api_keys`` takes new tenants' keys: Hydra puts the whole
    config in struct mode (no new keys), and tenant names are the user's, so that one mapping opts out."""
    schema = OmegaConf.structured(LoadgenAppConfig)
    OmegaConf.set_struct(schema.api_keys, False)
    return schema


def register_configs() -> None:
    """Store the load generator's schema, and the environment's (the scenario), in Hydra's ``ConfigStore``;
    call before composing (idempotent)."""
    register_env_configs()
    ConfigStore.instance().store(group=SCHEMA_GROUP, name="loadgen", node=loadgen_schema())
