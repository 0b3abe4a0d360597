"""``clairvoyant``: the SLA planner fed the true load of the next adjustment interval.

An upper reference for any predictor: instead of forecasting, it counts the episode's real requests
arriving in ``[now, now + adjustment_interval_s)`` (their number, mean prompt and mean output length) from
``PolicyContext.requests``. Everything else (profile, correction factors, budget, step limit) is the SLA
planner's. It plans from the first interval, since it needs no history to know the load.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.baselines.common import BaselineError
from agent.baselines.signals import Load
from agent.baselines.sla_planner import SlaPlannerPolicy
from agent.policy import PolicyContext
from env.metrics import MetricsSnapshot
from env.workload import RequestBatch


def true_load(requests: RequestBatch, start_s: float, length_s: float) -> Load:
    """Count, mean prompt and mean output length of the requests arriving in ``[start_s, start_s + length_s)``.

    Args:
        requests: the episode's requests, sorted by arrival.
        start_s: window start (seconds from episode start).
        length_s: window length (seconds).
    """
    first, last = requests.arrival_s.searchsorted([start_s, start_s + length_s], side="left")
    if last <= first:
        return Load(0.0, 0.0, 0.0)
    return Load(float(last - first), float(requests.prompt_tokens[first:last].mean()),
                float(requests.output_tokens[first:last].mean()))


class ClairvoyantPlannerPolicy(SlaPlannerPolicy):
    """The SLA planner with perfect knowledge of the next interval's load (settings as the SLA planner's)."""

    name = "clairvoyant"
    sees_future = True  # it reads the episode's true requests (agent.policy.sees_future)

    def reset(self, context: PolicyContext) -> None:
        """As the SLA planner; requires the episode's true requests in ``context.requests``."""
        if context.requests is None:
            raise BaselineError(
                "clairvoyant: PolicyContext.requests is None; pass the episode's true requests "
                "(on the simulator: PolicyContext(..., requests=env.backend.requests) after env.reset)")
        super().reset(context)
        self.requests: RequestBatch = context.requests

    def forecast(self, history: Sequence[MetricsSnapshot]) -> Load:
        """The true load of ``[now, now + adjustment_interval_s)``, ``now`` being the last snapshot's end."""
        return true_load(self.requests, history[-1].end_s, self.settings.adjustment_interval_s)
