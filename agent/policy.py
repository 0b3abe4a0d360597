"""The one interface every policy implements: observation and snapshot history in, ``ClusterAction`` out.

Learned and non-learned policies alike are judged by ``agent.evaluate`` through
``DisaggClusterEnv.step_targets``, so they face the same scenarios, seeds, bounds and reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from env.backend import ClusterAction
from env.metrics import MetricsSnapshot
from env.scenario import ScenarioConfig
from env.workload import RequestBatch


@dataclass
class PolicyContext:
    """What a policy may know about an episode before it starts.

    Attributes:
        scenario: the episode's scenario (after domain randomisation): tenants and their SLOs, the cluster's
            pools, bounds and GPU budget, the model and hardware.
        interval_s: the control interval (seconds).
        requests: the episode's true requests, for clairvoyant references only; None for every policy that
            does not see the future (and always None on a live cluster).
        feature_names: the observation's feature names, in order.
    """

    scenario: ScenarioConfig
    interval_s: float
    requests: RequestBatch | None = None
    feature_names: Sequence[str] = ()


@runtime_checkable
class Policy(Protocol):
    """A controller of replica counts and batch knobs."""

    name: str

    def reset(self, context: PolicyContext) -> None:
        """Prepare for a new episode."""
        ...

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """Targets for the next interval. ``history[-1]`` is the interval that just ended."""
        ...
