"""``headroom_planner``: fixed utilisations, the window's peak demand, disaggregated clusters only."""

from __future__ import annotations

import math

import pytest

from agent.baselines import make_baseline
from agent.baselines.profile import PerfProfile
from env.errors import ConfigError
from env.metrics import MetricsSnapshot
from env.testing import TenantSpecimen
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
