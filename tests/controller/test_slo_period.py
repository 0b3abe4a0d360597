"""``controller.slo_period_start``: the observation's SLO-period clock follows a calendar, not the daemon's start
(what a bundle that learned a burst's time of the period needs on a live cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pytest

from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.controller.loop import ControllerLoop
from disaggpilot.controller.policies import make_fallback
from disaggpilot.controller.telemetry import ControllerMetrics
from disaggpilot.controller.testing import FixedPolicy, FlakyActuator
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.observation import ObservationConfig
from disaggpilot.env.testing import ScriptedBackend
from tests.controller.conftest import INTERVAL_S, config, healthy_spec
from tests.env.sim.conftest import small_scenario

PERIOD_S = 600.0  # small_scenario's duration: the controller's SLO period
START = "2026-12-07T00:00:00+00:00"


class TimeLeftPolicy(FixedPolicy):
    """Holds 2+2 and records the observation's ``cluster/time_left`` at every decision."""

    def __init__(self, index: int) -> None:
        super().__init__({"prefill": 2, "decode": 2})
        self.index, self.time_left = index, list[float]()

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        self.time_left.append(float(observation[self.index]))
        return super().act(observation, history)


def time_left_over(decisions: int, settings: ControllerConfig, wall_s: float) -> list[float]:
    """``cluster/time_left`` at each decision; the exported period gauge must agree with the last."""
    environment = EnvConfig(interval_s=INTERVAL_S, observation=ObservationConfig(budget_features=True))
    backend, clock = ScriptedBackend([healthy_spec()]), VirtualClock()
    metrics = ControllerMetrics(("prefill", "decode"), ("chat", "summarise"), settings.mode)
    loop = ControllerLoop(settings, small_scenario(), environment, backend, FlakyActuator(backend=backend), clock,
                          None, make_fallback(settings), metrics, wall_clock=lambda: wall_s + clock.now())
    policy = TimeLeftPolicy(loop.observer.names.index("cluster/time_left"))
    loop.policy = policy
    loop.run(decisions)
    elapsed = metrics.registry.get_sample_value("disaggpilot_controller_slo_period_elapsed_seconds")
    assert elapsed == pytest.approx((1 - policy.time_left[-1]) * PERIOD_S)
    return policy.time_left


def test_the_period_clock_follows_the_configured_calendar_and_wraps() -> None:
    start = datetime.fromisoformat(START).timestamp()
    joined = time_left_over(3, config(slo_period_start=START), wall_s=start + 7 * PERIOD_S + 480.0)
    assert joined == pytest.approx([1 - 510 / PERIOD_S, 1 - 540 / PERIOD_S, 1 - 570 / PERIOD_S])
    wrapped = time_left_over(5, config(slo_period_start=START), wall_s=start + 510.0)
    # the interval that closes at 600 s is the period's last (0 left); the next period starts its clock afresh
    assert wrapped == pytest.approx([1 - 540 / PERIOD_S, 1 - 570 / PERIOD_S, 0.0, 1 - 30 / PERIOD_S, 1 - 60 / PERIOD_S])
    unset = time_left_over(2, config(), wall_s=start + 480.0)  # the period starts with the daemon
    assert unset == pytest.approx([1 - 30 / PERIOD_S, 1 - 60 / PERIOD_S])


@pytest.mark.parametrize(("value", "message"), [
    ("2026-12-07T00:00:00", r"controller\.slo_period_start='2026-12-07T00:00:00'.*add the UTC offset"),
    ("midnight", r"controller\.slo_period_start='midnight'.*ISO 8601 time with its UTC offset"),
])
def test_a_bad_period_start_is_refused_naming_the_field_and_the_fix(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(slo_period_start=value)
