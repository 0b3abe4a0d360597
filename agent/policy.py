"""The one interface every policy implements: observation and snapshot history in, ``ClusterAction`` out.

Learned and non-learned policies alike are judged by ``agent.evaluate`` through
``DisaggClusterEnv.step_targets``, so they face the same scenarios, seeds, bounds and reward.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.observation import ObservationConfig
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.workload import RequestBatch

if TYPE_CHECKING:
    from disaggpilot.env.cluster_env import EnvConfig

log = logging.getLogger("disaggpilot.policy")


@dataclass
class PolicyContext:
    """What a policy may know about an episode before it starts.

    Attributes:
        scenario: the episode's scenario (after domain randomisation): tenants and their SLOs, the cluster's
            pools, bounds and GPU budget, the model and hardware.
        interval_s: the control interval (seconds).
        requests: the episode's true requests, for references that see the future only; None for every
            policy that does not see the future (and always None on a live cluster).
        feature_names: the observation's feature names, in order.
    """

    scenario: ScenarioConfig
    interval_s: float
    requests: RequestBatch | None = None
    feature_names: Sequence[str] = ()


@runtime_checkable
class Policy(Protocol):
    """A controller of replica counts and batch knobs.

    A policy whose decisions depend on recent intervals it keeps itself (a demand window) may also offer
    ``warm_up_intervals`` (how many it uses) and ``warm_up(history)``: a restarted controller hands it the
    intervals before its first decision, read back from its metrics store. Neither is part of the protocol.
    """

    name: str

    def reset(self, context: PolicyContext) -> None:
        """Prepare for a new episode."""
        ...

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """Targets for the next interval. ``history[-1]`` is the interval that just ended."""
        ...


def sees_future(policy: object) -> bool:
    """Whether ``policy`` reads the episode it is judged on (a hindsight reference such as ``static_oracle`` or
    ``dynamic_oracle``, whose class sets ``sees_future = True``); False for every controller. Not a member of
    :class:`Policy`, so policies that never see the future need not declare it."""
    return bool(getattr(policy, "sees_future", False))


def environment_for(policy: Policy, configured: EnvConfig) -> EnvConfig:
    """The environment settings to run ``policy`` under: ``configured``, except that a trained policy (one with a
    ``trained_observation``, e.g. a bundle's) gets the observation settings it learned on.

    The bundle knows its layout and scales, so evaluation, notebooks and the controller need no flag repeated
    by hand for it; the simulation itself (the episode every policy faces) does not depend on the observation.
    A configured observation that differs is replaced, and the fields that changed are logged.
    """
    trained = getattr(policy, "trained_observation", None)
    chosen = observing_as(trained if isinstance(trained, ObservationConfig) else None, configured)
    if chosen is not configured:
        changed = {item.name: f"{_brief(getattr(configured.observation, item.name))} -> "
                              f"{_brief(getattr(trained, item.name))}"
                   for item in dataclasses.fields(ObservationConfig)
                   if getattr(configured.observation, item.name) != getattr(trained, item.name)}
        log.info("policy %s observes as it was trained: env.observation %s", getattr(policy, "name", "?"), changed)
    return chosen


def _brief(value: object) -> str:
    """``value`` for a log line: a list of features by its length, anything else as its repr."""
    return f"<{len(value)} features>" if isinstance(value, list) else repr(value)


def observing_as(trained: ObservationConfig | None, configured: EnvConfig) -> EnvConfig:
    """``configured`` with the observation settings ``trained`` (itself when they are None or already equal)."""
    if trained is None or trained == configured.observation:
        return configured
    return dataclasses.replace(configured, observation=trained)
