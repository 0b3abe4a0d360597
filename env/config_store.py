"""Hydra structured-config schemas: the settings dataclasses registered in Hydra's ``ConfigStore``.

A config yaml opts into a schema through its defaults list, e.g. ``configs/scenario/steady.yaml`` starts with
``defaults: [/schema/scenario@_here_, _self_]``. OmegaConf then type-checks the yaml and every command-line override
against the dataclass (``scenario.cluster.decode.replicas=abc`` fails, naming the key) and rejects unknown
keys. Ranges and cross-field rules stay with the dataclasses' own validation, which runs when
``env.simulate.scenario_from_config`` builds them from the composed config.

The environment's (``env``) and the training run's (``run``, ``agent.config_store``) schemas are their
dataclasses' defaults as untyped configs (``env.structured.defaults_node``): their keys and defaults come from
the dataclass alone, and their type errors are reported by the dataclasses' own checks, whose messages the
command line pins. Config yamls state only what differs from these defaults (``tests/test_configs.py`` keeps it
so), and ``env.structured.build`` turns a composed node into its dataclass with ``OmegaConf.to_object``.

One field is left untyped in the schema: OmegaConf 2.3 cannot fill a ``null`` nested dataclass from an override
(omry/omegaconf#1035), so ``TenantSpec.trace`` is ``Any`` to OmegaConf (still ``TraceSpec | None`` to mypy)
and is checked by ``TenantSpec`` itself; set it with ``scenario.tenants.0.trace={path:...}``.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.live.config import LiveConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.structured import defaults_node

SCHEMA_GROUP = "schema"
"""Config group of the schemas. No app selects from it, so a schema is never offered (or selectable) as an
option of the group it describes: ``scenario=<name>`` lists only the scenarios of ``configs/scenario/``."""
SCENARIO_SCHEMA = f"/{SCHEMA_GROUP}/scenario@_here_"
"""The defaults-list entry a scenario yaml starts with: the ``ScenarioConfig`` schema, merged at its own package."""


def register_configs() -> None:
    """Store the environment's schemas in Hydra's ``ConfigStore``; call before composing (idempotent). The
    agent's, the controller's and the load generator's (``localcluster.config_store``) register beside them."""
    store = ConfigStore.instance()
    store.store(group=SCHEMA_GROUP, name="scenario", node=ScenarioConfig)
    store.store(group=SCHEMA_GROUP, name="env", node=defaults_node(EnvConfig))
    store.store(group=SCHEMA_GROUP, name="reward", node=RewardConfig)
    store.store(group=SCHEMA_GROUP, name="live", node=LiveConfig)
