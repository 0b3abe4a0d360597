"""Non-learned reference controllers (issue 4), behind one registry.

Every baseline implements :class:`agent.policy.Policy` and is built from keyword settings (a resolved
config section), validated at construction by its settings dataclass::

    policy = make_baseline("threshold", prefill_waiting_per_replica=2.0)
    policy.reset(PolicyContext(scenario=env.world, interval_s=env.config.interval_s))
    action = policy.act(observation, env.history)

Three need more from the harness. Two see the future and must search the episode they are judged on
before ``reset``: ``policy.search(scenario, seed, env.config)`` (``static_oracle``, ``dynamic_oracle``; see
:class:`StaticOraclePolicy`); they say so with the class attribute ``sees_future = True``
(:func:`agent.policy.sees_future`). ``static_tuned`` is calibrated on its own seeds through the harness's
``prepare`` hook, which never gives it the evaluated episode (see :class:`StaticTunedPolicy`).

Names, classes and settings dataclasses (every field documented with its unit):

- ``static``: :class:`StaticPolicy`, :class:`StaticSettings`
- ``static_tuned``: :class:`StaticTunedPolicy`, :class:`StaticTunedSettings`
- ``static_oracle``: :class:`StaticOraclePolicy`, :class:`StaticOracleSettings`
- ``threshold``: :class:`ThresholdPolicy`, :class:`ThresholdSettings`
- ``sla_planner``: :class:`SlaPlannerPolicy`, :class:`SlaPlannerSettings` (the classic Dynamo planner)
- ``dynamo_planner``: :class:`DynamoPlannerPolicy`, :class:`DynamoPlannerSettings` (today's Dynamo planner)
- ``saturation``: :class:`SaturationPolicy`, :class:`SaturationSettings`
- ``headroom_planner``: :class:`HeadroomPlannerPolicy`, :class:`HeadroomPlannerSettings`
- ``dynamic_oracle``: :class:`DynamicOraclePolicy`, :class:`DynamicOracleSettings`
"""

from __future__ import annotations

from typing import Any

from disaggpilot.agent.baselines.common import BaselineError
from disaggpilot.agent.baselines.dynamic_oracle import DynamicOraclePolicy
from disaggpilot.agent.baselines.dynamo_planner import DynamoPlannerPolicy, DynamoPlannerSettings
from disaggpilot.agent.baselines.headroom_planner import HeadroomPlannerPolicy, HeadroomPlannerSettings
from disaggpilot.agent.baselines.saturation import SaturationPolicy, SaturationSettings
from disaggpilot.agent.baselines.schedule import DynamicOracleSettings
from disaggpilot.agent.baselines.sla_planner import SlaPlannerPolicy, SlaPlannerSettings
from disaggpilot.agent.baselines.static import StaticPolicy, StaticSettings
from disaggpilot.agent.baselines.static_oracle import StaticOraclePolicy, StaticOracleSettings
from disaggpilot.agent.baselines.static_tuned import StaticTunedPolicy, StaticTunedSettings
from disaggpilot.agent.baselines.threshold import ThresholdPolicy, ThresholdSettings
from disaggpilot.agent.policy import Policy
from disaggpilot.env.errors import ConfigError

BASELINES: dict[str, type] = {
    "static": StaticPolicy,
    "static_tuned": StaticTunedPolicy,
    "static_oracle": StaticOraclePolicy,
    "threshold": ThresholdPolicy,
    "sla_planner": SlaPlannerPolicy,
    "dynamo_planner": DynamoPlannerPolicy,
    "saturation": SaturationPolicy,
    "headroom_planner": HeadroomPlannerPolicy,
    "dynamic_oracle": DynamicOraclePolicy,
}
"""Registry name → policy class; each class takes its settings as keyword arguments."""

SETTINGS: dict[str, type] = {
    "static": StaticSettings,
    "static_tuned": StaticTunedSettings,
    "static_oracle": StaticOracleSettings,
    "threshold": ThresholdSettings,
    "sla_planner": SlaPlannerSettings,
    "dynamo_planner": DynamoPlannerSettings,
    "saturation": SaturationSettings,
    "headroom_planner": HeadroomPlannerSettings,
    "dynamic_oracle": DynamicOracleSettings,
}
"""Registry name → the settings dataclass its keyword arguments fill: the Hydra schema of
``configs/policy/<name>.yaml`` (``agent.config_store``), whose defaults the file does not restate."""


def make_baseline(kind: str, **params: Any) -> Policy:
    """Build the baseline registered as ``kind`` from keyword settings.

    Args:
        kind: a key of :data:`BASELINES`.
        **params: the policy's settings (fields of its settings dataclass).

    Raises:
        ConfigError: ``kind`` is unknown, or a setting is unknown or out of range.
    """
    if kind not in BASELINES:
        raise ConfigError(f"agent.kind={kind!r} is not a baseline: use one of {sorted(BASELINES)}")
    policy: Policy = BASELINES[kind](**params)
    return policy


__all__ = [
    "BASELINES", "SETTINGS", "BaselineError", "DynamicOraclePolicy", "DynamicOracleSettings", "DynamoPlannerPolicy",
    "DynamoPlannerSettings", "HeadroomPlannerPolicy", "HeadroomPlannerSettings", "SaturationPolicy",
    "SaturationSettings", "SlaPlannerPolicy", "SlaPlannerSettings", "StaticOraclePolicy", "StaticOracleSettings",
    "StaticPolicy", "StaticSettings", "StaticTunedPolicy", "StaticTunedSettings", "ThresholdPolicy",
    "ThresholdSettings", "make_baseline",
]
