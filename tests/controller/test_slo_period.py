"""``controller.slo_period_start``: the observation's SLO-period clock follows a calendar, not the daemon's start
(what a bundle that learned a burst's time of the period needs on a live cluster)."""

from __future__ import annotations

import logging
import math
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
from disaggpilot.env.backend import ClusterAction, ClusterBackend
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.live.errors import PrometheusQueryError, PrometheusUnavailableError
from disaggpilot.env.metrics import GW_MET, GW_MISSED, MetricsSnapshot
from disaggpilot.env.observation import ObservationConfig
from disaggpilot.env.reward import miss_budget_left
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.testing import ScriptedBackend, SnapshotSpec, TenantSpecimen, make_snapshot
from tests.controller.conftest import INTERVAL_S, config, healthy_spec
from tests.env.sim.conftest import small_scenario

PERIOD_S = 600.0  # small_scenario's duration: the controller's SLO period
START = "2026-12-07T00:00:00+00:00"


class RecordingPolicy(FixedPolicy):
    """Holds 2+2 and records the named observation features at every decision."""

    def __init__(self, indices: dict[str, int]) -> None:
        super().__init__({"prefill": 2, "decode": 2})
        self.indices, self.seen = indices, {name: list[float]() for name in indices}

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        for name, index in self.indices.items():
            self.seen[name].append(float(observation[index]))
        return super().act(observation, history)


def run_loop(decisions: int, settings: ControllerConfig, wall_s: float, source: ClusterBackend | None = None,
             features: Sequence[str] = ("cluster/time_left",)) -> tuple[RecordingPolicy, ControllerMetrics]:
    """The loop over ``source`` (by default a healthy scripted cluster) for ``decisions`` decisions, the wall
    clock at ``wall_s`` when it starts; the policy records ``features`` at each decision."""
    environment = EnvConfig(interval_s=INTERVAL_S, observation=ObservationConfig(budget_features=True))
    backend, clock = source or ScriptedBackend([healthy_spec()]), VirtualClock()
    metrics = ControllerMetrics(("prefill", "decode"), ("chat", "summarise"), settings.mode)
    loop = ControllerLoop(settings, small_scenario(), environment, backend, FlakyActuator(backend=backend), clock,
                          None, make_fallback(settings), metrics, wall_clock=lambda: wall_s + clock.now())
    policy = RecordingPolicy({name: loop.observer.names.index(name) for name in features})
    loop.policy = policy
    loop.run(decisions)
    return policy, metrics


def time_left_over(decisions: int, settings: ControllerConfig, wall_s: float) -> list[float]:
    """``cluster/time_left`` at each decision; the exported period gauge must agree with the last."""
    policy, metrics = run_loop(decisions, settings, wall_s)
    time_left = policy.seen["cluster/time_left"]
    elapsed = metrics.registry.get_sample_value("disaggpilot_controller_slo_period_elapsed_seconds")
    assert elapsed == pytest.approx((1 - time_left[-1]) * PERIOD_S)
    return time_left


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


# ----- joining a period under way: the miss budgets start from the period's counts ---------------------------
BUDGETS = ("tenant0/miss_budget_left", "tenant1/miss_budget_left")  # chat, summarise (targets 0.99)
START_S = datetime.fromisoformat(START).timestamp()


def budgets_over(decisions: int, source: ClusterBackend, wall_s: float = START_S + 480.0,
                 **settings: object) -> tuple[dict[str, list[float]], float | None]:
    """Each tenant's miss budget at each decision, and the exported count of tenants the join could not count."""
    policy, metrics = run_loop(decisions, config(slo_period_start=START, **settings), wall_s, source, BUDGETS)
    return policy.seen, metrics.registry.get_sample_value("disaggpilot_controller_slo_period_counts_unknown")


def served(met: int, missed: int) -> SnapshotSpec:
    """An interval before the daemon started, as the metrics store kept it: chat's judgements only."""
    return SnapshotSpec(tenants={"chat": TenantSpecimen(arrived=met + missed, met=met, missed=missed)})


def test_a_daemon_joining_a_period_starts_each_budget_from_the_period_s_counts() -> None:
    """480 s into the period the store holds 16 intervals in which chat had 30 misses in 1,040 requests (0.97,
    under its 0.99 target); every scripted snapshot since (the first scrape's too) adds 100 met; summarise,
    which the store does not know, starts full."""
    source = ScriptedBackend([healthy_spec()], history_before=[served(60, 5)] * 6 + [served(65, 0)] * 10)
    seen, unknown = budgets_over(2, source)
    assert source.history_queries == [(pytest.approx(480.0), INTERVAL_S)]
    assert seen["tenant0/miss_budget_left"] == pytest.approx(
        [miss_budget_left(1210.0, 30.0, 0.99), miss_budget_left(1310.0, 30.0, 0.99)], abs=1e-6)
    assert seen["tenant0/miss_budget_left"][0] < 0  # a full budget would read 1
    assert seen["tenant1/miss_budget_left"] == [1.0, 1.0]
    assert unknown == 1
    started_with_the_daemon = ScriptedBackend([healthy_spec()], history_before=[served(60, 5)])
    policy, metrics = run_loop(1, config(), START_S, started_with_the_daemon, BUDGETS)
    assert policy.seen["tenant0/miss_budget_left"] == [1.0]  # the period starts now: nothing to replay
    assert started_with_the_daemon.history_queries == [(40 * INTERVAL_S, INTERVAL_S)]  # the fallback's warm-up
    assert metrics.registry.get_sample_value("disaggpilot_controller_slo_period_counts_unknown") == 0


@pytest.mark.parametrize("failure", [PrometheusQueryError("bad query"), PrometheusUnavailableError("down")])
def test_a_store_that_cannot_count_leaves_full_budgets_and_says_so(failure: Exception,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    source = ScriptedBackend([healthy_spec()], history_before=failure)
    with caplog.at_level(logging.ERROR, logger="disaggpilot.controller"):
        seen, unknown = budgets_over(2, source, fallback={"backoff": {"attempts": 2}})
    assert seen["tenant0/miss_budget_left"] == [1.0, 1.0] and unknown == 2
    assert len(source.history_queries) == (1 if isinstance(failure, PrometheusQueryError) else 2)  # retried
    assert any("could not replay the SLO period so far" in r.getMessage() for r in caplog.records)


class StoreHolding(ScriptedBackend):
    """A scripted cluster whose metrics store answers with ``history`` as given (bad values included)."""

    def __init__(self, history: list[MetricsSnapshot]) -> None:
        super().__init__([healthy_spec()])
        self.history = history

    def period_so_far(self, seconds: float, interval_s: float) -> list[MetricsSnapshot]:
        return self.history


def test_counts_that_are_not_valid_are_set_aside_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    spec = SnapshotSpec(tenants={"chat": TenantSpecimen(arrived=10, met=5, missed=5),
                                 "summarise": TenantSpecimen(arrived=10, met=5, missed=5),
                                 "code": TenantSpecimen(arrived=10, met=5, missed=5)})
    history = make_snapshot(spec, -30.0, 0.0)
    history.tenants["chat"].counters[GW_MET] = math.nan
    history.tenants["summarise"].counters[GW_MISSED] = -1.0
    with caplog.at_level(logging.WARNING, logger="disaggpilot.controller"):
        seen, unknown = budgets_over(1, StoreHolding([history]))
    assert seen["tenant0/miss_budget_left"] == [1.0] and seen["tenant1/miss_budget_left"] == [1.0] and unknown == 2
    assert any("counts set aside" in r.getMessage() and "'code'" in r.getMessage() for r in caplog.records)


def test_a_source_without_a_metrics_store_joins_with_full_budgets() -> None:
    seen, unknown = budgets_over(1, SimBackend(small_scenario()))
    assert seen["tenant0/miss_budget_left"][0] == pytest.approx(1.0, abs=0.2) and unknown == 2


# ----- the policy's own window: warmed up from the same store -------------------------------------------------
class WarmingPolicy(RecordingPolicy):
    """Keeps a window of ``intervals`` of its own; records what it is warmed up with."""

    def __init__(self, intervals: int) -> None:
        super().__init__({})
        self.warm_up_intervals, self.warmed = intervals, list[list[float]]()

    def warm_up(self, history: Sequence[MetricsSnapshot]) -> None:
        self.warmed.append([snapshot.end_s for snapshot in history])


def warmed_with(settings: ControllerConfig, source: ScriptedBackend) -> tuple[list[list[float]], list[list[float]]]:
    """What the policy (a 3-interval window) and the fallback (a 5-interval one) are warmed up with."""
    environment = EnvConfig(interval_s=INTERVAL_S, observation=ObservationConfig(budget_features=True))
    clock = VirtualClock()
    loop = ControllerLoop(settings, small_scenario(), environment, source, FlakyActuator(backend=source), clock,
                          None, make_fallback(settings), None, wall_clock=lambda: START_S + 480.0 + clock.now())
    policy, fallback = WarmingPolicy(3), WarmingPolicy(5)
    loop.policy, loop.fallback = policy, fallback
    loop.run(1)
    return policy.warmed, fallback.warmed


def test_a_policy_with_its_own_window_is_warmed_up_with_the_last_intervals_before_the_start() -> None:
    """The policy and the fallback each get the last intervals their windows hold, from one read of the store."""
    last_five = [-120.0, -90.0, -60.0, -30.0, 0.0]
    joined = ScriptedBackend([healthy_spec()], history_before=[served(60, 5)] * 16)
    assert warmed_with(config(slo_period_start=START), joined) == ([last_five[-3:]], [last_five])  # the replay's
    assert joined.history_queries == [(pytest.approx(480.0), INTERVAL_S)]  # one read serves both
    fresh = ScriptedBackend([healthy_spec()], history_before=[served(60, 5)] * 16)
    assert warmed_with(config(), fresh) == ([last_five[-3:]], [last_five])  # no period calendar: the last 5 alone
    assert fresh.history_queries == [(5 * INTERVAL_S, INTERVAL_S)]
    down = ScriptedBackend([healthy_spec()], history_before=PrometheusUnavailableError("down"))
    assert warmed_with(config(), down) == ([], [])  # nothing to warm up with: both start with empty windows
