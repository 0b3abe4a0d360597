"""``dynamic_oracle``: the best schedule in hindsight that holds every target, its cache and its replay."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from disaggpilot.agent.baselines import BaselineError, DynamicOraclePolicy, StaticOraclePolicy, make_baseline
from disaggpilot.agent.baselines.feed_forward import interval_demand, lookahead_peak
from disaggpilot.agent.baselines.oracle_schedule import dynamic_oracle_schedule
from disaggpilot.agent.baselines.oracle_search import Trials
from disaggpilot.agent.baselines.schedule import DynamicOracleSettings
from disaggpilot.agent.evaluation.episode import EpisodeTask, run_episode
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.policy import sees_future
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.scenario import ScenarioConfig, load_scenario
from disaggpilot.env.workload import RateChange, RequestBatch
from tests.agent.baselines.helpers import context

SEED = 100
SEARCH = {"max_simulations": 8, "prefill_utilization_levels": [0.6, 0.9], "decode_utilization_levels": [0.8],
          "floor_fractions": [0.0]}
"""A small search budget: a 2-point coarse grid and a short refinement."""


def short_flash_crowd() -> ScenarioConfig:
    """``flash_crowd`` cut to 1,800 s with its 5x consumer spike moved to 900..1,500 s (so the cut keeps it)."""
    scenario = load_scenario("flash_crowd")
    consumer = scenario.tenants[0]
    arrival = dataclasses.replace(consumer.arrival, changes=[RateChange(900.0, 600.0, 5.0)])
    tenants = [dataclasses.replace(consumer, arrival=arrival), *scenario.tenants[1:]]
    return dataclasses.replace(scenario, duration_s=1800.0, tenants=tenants)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[DynamicOraclePolicy, Path]:
    """The oracle searched once on the short flash crowd, its schedule cached in a temporary directory."""
    cache = tmp_path_factory.mktemp("oracle_cache")
    oracle = DynamicOraclePolicy(**SEARCH, cache_dir=str(cache))
    oracle.search(short_flash_crowd(), SEED, EnvConfig())
    return oracle, cache


def test_holds_every_target_and_earns_at_least_the_static_oracle(searched: tuple[DynamicOraclePolicy, Path]) -> None:
    oracle, _ = searched
    schedule = oracle.schedule
    static = StaticOraclePolicy().search(short_flash_crowd(), SEED, EnvConfig()).best
    assert schedule is not None and schedule.holds and static.meets_targets
    assert schedule.static_tokens_per_usd == pytest.approx(static.tokens_per_usd)
    assert schedule.tokens_per_usd >= static.tokens_per_usd
    assert all(schedule.attainment[t.name] >= t.attainment_target for t in short_flash_crowd().tenants)
    assert schedule.family == "feed_forward"  # following the spike beats any fixed configuration here
    prefill = [t["prefill"] for t in schedule.targets]
    assert len(prefill) == 60 and max(prefill[30:50]) > max(prefill[:20])  # more prefill for the spike


def test_the_harness_replays_the_searched_figures_and_reports_the_hold(
        searched: tuple[DynamicOraclePolicy, Path]) -> None:
    oracle, cache = searched
    spec = PolicySpec("dynamic_oracle", "dynamic_oracle", {**SEARCH, "cache_dir": str(cache)}, sees_future=True)
    row = run_episode(EpisodeTask(0, spec, short_flash_crowd(), SEED)).row
    assert oracle.schedule is not None
    assert row["goodput_tokens_per_usd"] == pytest.approx(oracle.schedule.tokens_per_usd)
    assert row["meets_slo"] and row["oracle_holds"] is True and "oracle_note" not in row


def test_the_cache_returns_the_same_schedule_without_simulating(searched: tuple[DynamicOraclePolicy, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    oracle, cache = searched
    ran: list[object] = []
    monkeypatch.setattr(Trials, "_run", lambda self, candidate: ran.append(candidate))
    again = dynamic_oracle_schedule(short_flash_crowd(), SEED, EnvConfig(),
                                    DynamicOracleSettings(**SEARCH, cache_dir=str(cache)))  # type: ignore[arg-type]
    assert again == oracle.schedule and ran == []
    (stored,) = cache.glob("flash_crowd__100__*.json")
    raw = json.loads(stored.read_text())
    assert raw["targets"][0].keys() == {"prefill", "decode", "max_num_batched_tokens", "max_num_seqs"}
    assert len(raw["demand"]["prefill_tokens_per_s"]) == len(raw["targets"]) == 60


def test_the_search_is_reproducible_from_the_seed(searched: tuple[DynamicOraclePolicy, Path]) -> None:
    oracle, _ = searched
    fresh = dynamic_oracle_schedule(short_flash_crowd(), SEED, EnvConfig(),
                                    DynamicOracleSettings(**SEARCH, cache_dir=None))  # type: ignore[arg-type]
    assert oracle.schedule is not None
    assert fresh.targets == oracle.schedule.targets and fresh.params == oracle.schedule.params
    assert fresh.tokens_per_usd == oracle.schedule.tokens_per_usd


def test_a_schedule_that_misses_says_so_in_the_results_row(tmp_path: Path) -> None:
    """Without the static candidate and with only hopelessly high utilisations, nothing holds."""
    scenario = short_flash_crowd()
    spec = PolicySpec("dynamic_oracle", "dynamic_oracle", {
        "include_static": False, "prefill_utilization_levels": [1.0], "decode_utilization_levels": [1.0],
        "floor_fractions": [0.0], "max_simulations": 1, "cache_dir": str(tmp_path)})
    row = run_episode(EpisodeTask(0, spec, scenario, SEED)).row
    assert row["oracle_holds"] is False and not row["meets_slo"]
    assert "no searched schedule held every target" in row["oracle_note"]


def test_demand_and_lookahead_peak() -> None:
    requests = RequestBatch(arrival_s=np.array([1.0, 2.0, 31.0, 95.0]), tenant=np.zeros(4),
                            prompt_tokens=np.array([30, 60, 300, 900]), output_tokens=np.array([3, 3, 6, 9]),
                            tenant_names=("a",))
    demand = interval_demand(requests, 4, 30.0)
    assert demand.prefill_tokens_per_s.tolist() == [3.0, 10.0, 0.0, 30.0]
    assert demand.decode_tokens_per_s.tolist() == [0.2, 0.2, 0.0, 0.3]
    assert lookahead_peak(demand.prefill_tokens_per_s, 2).tolist() == [10.0, 10.0, 30.0, 30.0]


def test_it_sees_the_future_and_checks_its_episode() -> None:
    assert sees_future(DynamicOraclePolicy()) and sees_future(StaticOraclePolicy())
    assert not sees_future(make_baseline("headroom_planner"))
    with pytest.raises(BaselineError, match=r"call search\(scenario, seed, env_config\)"):
        DynamicOraclePolicy().reset(context())
    with pytest.raises(ConfigError, match=r"agent.dynamic_oracle.decode_utilization_levels"):
        DynamicOraclePolicy(decode_utilization_levels=[1.2])
    with pytest.raises(ConfigError, match=r"agent.dynamic_oracle: unknown setting"):
        DynamicOraclePolicy(window=3)
