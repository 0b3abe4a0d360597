"""Hydra structured-config schemas: the settings dataclasses registered in Hydra's ``ConfigStore``.

A config yaml opts into a schema through its defaults list, e.g. ``configs/scenario/steady.yaml`` starts with
``defaults: [scenario_schema, _self_]``. OmegaConf then type-checks the yaml and every command-line override
against the dataclass (``scenario.cluster.decode.replicas=abc`` fails, naming the key) and rejects unknown
keys. Ranges and cross-field rules stay with the dataclasses' own validation, which runs when
``env.simulate.scenario_from_config`` builds them from the composed config.

One field is left untyped in the schema: OmegaConf 2.3 cannot fill a ``null`` nested dataclass from an override
(omry/omegaconf#1035), so ``TenantSpec.trace`` is ``Any`` to OmegaConf (still ``TraceSpec | None`` to mypy)
and is checked by ``TenantSpec`` itself; set it with ``scenario.tenants.0.trace={path:...}``.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from env.scenario import ScenarioConfig

SCENARIO_GROUP = "scenario"
"""Config group of scenarios (``configs/scenario/``)."""
SCENARIO_SCHEMA = "scenario_schema"
"""Name of the ``ScenarioConfig`` schema in the ``scenario`` group, used in scenario yamls' defaults lists."""


def register_configs() -> None:
    """Store every schema in Hydra's ``ConfigStore``; call before composing (idempotent)."""
    store = ConfigStore.instance()
    store.store(group=SCENARIO_GROUP, name=SCENARIO_SCHEMA, node=ScenarioConfig)
