"""``headroom_planner``: fixed utilisations, the window's peak demand, disaggregated clusters only."""

from __future__ import annotations

import math

import pytest

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.sizing.profile import PerfProfile
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.testing import TenantSpecimen, make_snapshot
from tests.agent.baselines.helpers import INTERVAL_S, context, history, spec
from tests.env.sim.conftest import small_scenario

PROMPT_TOKENS = 1000


def load(arrived: int) -> TenantSpecimen:
    return TenantSpecimen(arrived=arrived, met=arrived, prompt_tokens=PROMPT_TOKENS, output_tokens=100)


def prefill_targets(arrivals: list[int], **settings: object) -> list[int]:
    """The prefill target the planner sets after each interval of ``arrivals`` (chat only)."""
    policy = make_baseline("headroom_planner", **settings)
    policy.reset(context())
    snapshots: list[MetricsSnapshot] = history([spec()] + [spec(chat=load(n)) for n in arrivals])
    return [policy.act(None, snapshots[:end]).pools["prefill"].replicas  # type: ignore[arg-type]
            for end in range(2, len(snapshots) + 1)]


def test_a_pool_is_sized_for_its_demand_at_the_chosen_utilisation() -> None:
    profile = PerfProfile(small_scenario())
    replica_tokens_per_s = profile.prefill_throughput_per_gpu(PROMPT_TOKENS) * profile.prefill_gpus
    demand_tokens_per_s = 60 * PROMPT_TOKENS / INTERVAL_S
    for utilisation in (0.2, 0.5):
        expected = math.ceil(demand_tokens_per_s / (replica_tokens_per_s * utilisation))
        assert prefill_targets([60], prefill_utilization=utilisation) == [expected]
    assert prefill_targets([60], prefill_utilization=0.2)[0] > prefill_targets([60], prefill_utilization=0.5)[0]


def test_it_keeps_a_bursts_size_for_the_whole_window_then_shrinks() -> None:
    targets = prefill_targets([120] + [10] * 5, demand_window_intervals=3)
    burst, quiet = targets[0], targets[-1]
    assert burst > quiet
    assert targets == [burst, burst, burst, quiet, quiet, quiet]


def test_an_aggregated_cluster_is_refused_with_the_alternatives() -> None:
    policy = make_baseline("headroom_planner")
    with pytest.raises(ConfigError, match=r"no prefill/decode pools.*headroom sizer.*threshold or saturation"):
        policy.reset(context(small_scenario(prefill=0, decode=0, aggregated=2)))


def test_it_reads_its_window_from_the_history_so_a_fallback_asked_late_plans_the_same() -> None:
    arrivals = [120, 10, 10, 40, 10, 10]
    every_interval = prefill_targets(arrivals, demand_window_intervals=3)
    late = make_baseline("headroom_planner", demand_window_intervals=3)
    late.reset(context())
    snapshots = history([spec()] + [spec(chat=load(n)) for n in arrivals])
    assert late.act(None, snapshots).pools["prefill"].replicas == every_interval[-1]  # type: ignore[arg-type]
    assert late.act(None, snapshots[:3]).pools["prefill"].replicas == every_interval[1]  # type: ignore[arg-type]


def test_warmed_up_after_a_restart_it_plans_as_if_it_had_never_stopped() -> None:
    """A restarted controller hands the planner the intervals before its first decision (``warm_up``): it keeps
    a burst in its window as the uninterrupted planner does, where a cold one would plan for the quiet now."""
    arrivals = [10, 120, 10]  # the burst is still in the 3-interval window at the first decision after
    every_interval = prefill_targets([*arrivals, 10], demand_window_intervals=3)
    before = history([spec()] + [spec(chat=load(n)) for n in arrivals])[1:]
    restarted = [make_snapshot(spec(), 90.0, 90.0), make_snapshot(spec(chat=load(10)), 90.0, 120.0)]
    warmed, cold = (make_baseline("headroom_planner", demand_window_intervals=3) for _ in range(2))
    for policy in (warmed, cold):
        policy.reset(context())
    assert warmed.warm_up_intervals == 3
    warmed.warm_up(before)
    assert warmed.act(None, restarted).pools["prefill"].replicas == every_interval[-1]  # type: ignore[arg-type]
    assert cold.act(None, restarted).pools["prefill"].replicas < every_interval[-1]  # type: ignore[arg-type]


def heavy_tailed(prompt_tokens: int = PROMPT_TOKENS, arrived: int = 60) -> TenantSpecimen:
    return TenantSpecimen(arrived=arrived, met=arrived, prompt_tokens=prompt_tokens, output_tokens=100)


def targets_after(intervals: list[TenantSpecimen], **settings: object) -> tuple[int, int]:
    """(prefill, decode) targets the planner sets after the last of ``intervals`` (chat only)."""
    policy = make_baseline("headroom_planner", demand_window_intervals=len(intervals), **settings)
    policy.reset(context())
    action = policy.act(None, history([spec()] + [spec(chat=load) for load in intervals]))  # type: ignore[arg-type]
    prefill, decode = action.pools["prefill"].replicas, action.pools["decode"].replicas
    assert prefill is not None and decode is not None
    return prefill, decode


def test_one_interval_of_huge_prompts_sets_the_peak_plan_but_not_the_quantile_one() -> None:
    """Ten intervals of 60 requests; in one, a few 30k-token prompts lift the mean prompt to 20k tokens."""
    calm = [heavy_tailed()] * 10
    tailed = [*calm[:4], heavy_tailed(prompt_tokens=20_000), *calm[5:]]
    quantile = {"demand_statistic": "quantile", "demand_quantile": 0.9}
    assert targets_after(tailed)[0] > 3 * targets_after(calm)[0]  # the peak plans for the one inflated interval
    assert targets_after(tailed, **quantile) == targets_after(calm, **quantile)
    assert targets_after(calm, **quantile) == targets_after(calm)  # on even demand the two statistics agree


def test_the_quantile_plan_weighs_intervals_by_requests_so_a_burst_of_arrivals_still_counts() -> None:
    """Two intervals of 120 requests among eight of 60 hold a third of the window's requests: above 1 - q."""
    burst = [heavy_tailed()] * 4 + [heavy_tailed(arrived=120)] * 2 + [heavy_tailed()] * 4
    quantile = {"demand_statistic": "quantile", "demand_quantile": 0.9}
    assert targets_after(burst, **quantile) == targets_after(burst)
    assert targets_after(burst, **quantile)[0] > targets_after([heavy_tailed()] * 10, **quantile)[0]


def test_floors_hold_each_pool_up_and_a_fixed_point_is_expressible() -> None:
    quiet = [heavy_tailed(arrived=2)] * 10
    prefill, decode = targets_after(quiet)
    assert (prefill, decode) == (1, 1)
    assert targets_after(quiet, prefill_floor=4, decode_floor=2) == (4, 2)
    busy = [heavy_tailed(arrived=400)] * 10
    assert targets_after(busy, prefill_floor=1) == targets_after(busy)  # a floor below the plan changes nothing
    fixed = make_baseline("headroom_planner", demand_window_intervals=10, prefill_utilization=0.6,
                          decode_utilization=0.75, prefill_floor=4, decode_floor=2)
    sizer = fixed.sizer.settings  # type: ignore[attr-defined]
    assert (sizer.windows, sizer.prefill_floor_choices, sizer.decode_floor_choices) == ([10], [4], [2])
    assert sizer.nvec == [1, 1]  # one choice of each: the original two-dimension layout


@pytest.mark.parametrize(("key", "value"), [("prefill_floor", -1), ("decode_floor", 1.5),
                                            ("demand_statistic", "mean"), ("demand_quantile", 0.0)])
def test_bad_floor_or_statistic_names_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"agent\.headroom_planner\.{key}"):
        make_baseline("headroom_planner", **{key: value})
