"""``static_tuned``: the configuration searched on calibration seeds only, replayed on every evaluation seed."""

from __future__ import annotations

from pathlib import Path

import pytest

import disaggpilot.agent.baselines.oracle_search as oracle_search
from disaggpilot.agent.baselines import BaselineError, StaticTunedPolicy
from disaggpilot.agent.baselines.oracle_search import Candidate, Evaluation
from disaggpilot.agent.baselines.static_tuned import pick
from disaggpilot.agent.evaluation.episode import EpisodeTask, run_episode
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from tests.agent.baselines.helpers import context
from tests.env.sim.conftest import small_scenario

SCENARIO = small_scenario(duration_s=300.0)


@pytest.fixture
def searched_seeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every seed the configuration search's environments are reset with."""
    seeds: list[int] = []

    class Recording(DisaggClusterEnv):
        def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
            seeds.append(int(seed) if seed is not None else -1)
            return super().reset(seed=seed, options=options)

    monkeypatch.setattr(oracle_search, "DisaggClusterEnv", Recording)
    monkeypatch.setattr(oracle_search, "_CACHE", {})  # no trial recalled from another test
    return seeds


def test_the_search_never_sees_the_evaluation_seed(searched_seeds: list[int], tmp_path: Path) -> None:
    task = EpisodeTask(index=0, policy=PolicySpec("static_tuned", "static_tuned", {"cache_dir": str(tmp_path)}),
                       scenario=SCENARIO, seed=7, prepares=True)
    result = run_episode(task)
    assert result.row and searched_seeds and set(searched_seeds) == {0}
    picks = []
    for evaluation_seed in (100, 101):
        policy = StaticTunedPolicy(cache_dir=None)
        picks.append(policy.prepare(SCENARIO, evaluation_seed, EnvConfig()).candidate)
    assert set(searched_seeds) == {0} and picks[0] == picks[1]


def test_one_calibration_seed_picks_what_static_oracle_picks_there(tmp_path: Path) -> None:
    tuned = StaticTunedPolicy(cache_dir=str(tmp_path)).calibrate(SCENARIO, EnvConfig())
    oracle = oracle_search.run_search(SCENARIO, 0, EnvConfig(), None, None, None, True)
    assert tuned.candidate == oracle.best.candidate and tuned.holds_targets == oracle.best.meets_targets
    assert tuned.tokens_per_usd == pytest.approx(oracle.best.tokens_per_usd)


def test_the_pick_is_cached_in_a_file_per_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = StaticTunedPolicy(cache_dir=str(tmp_path)).calibrate(SCENARIO)
    assert len(list(tmp_path.glob("small-*.json"))) == 1

    def no_search(*args: object) -> None:
        raise AssertionError("searched again despite the cache")
    monkeypatch.setattr("disaggpilot.agent.baselines.static_tuned.run_search", no_search)
    assert StaticTunedPolicy(cache_dir=str(tmp_path)).calibrate(SCENARIO) == first
    with pytest.raises(AssertionError, match="searched again"):
        StaticTunedPolicy(cache_dir=str(tmp_path), calibration_seeds=[1]).calibrate(SCENARIO)


def trial(candidate: Candidate, meets: bool, goodput: float, cost: float, worst: float = 0.95) -> Evaluation:
    return Evaluation(candidate, {}, meets, worst, goodput, cost, goodput / cost)


def test_several_seeds_pick_the_best_configuration_that_holds_on_all() -> None:
    small, medium, large = (Candidate((("prefill", n), ("decode", 1)), 8192, 256) for n in (1, 2, 3))
    per_seed = {
        0: {small: trial(small, True, 100, 1), medium: trial(medium, True, 100, 2), large: trial(large, True, 100, 3)},
        1: {small: trial(small, False, 90, 1, 0.8), medium: trial(medium, True, 100, 2),
            large: trial(large, True, 100, 3)},
    }
    chosen = pick(per_seed)
    assert chosen.candidate == medium and chosen.holds_targets and chosen.seeds == (0, 1)
    assert chosen.tokens_per_usd == pytest.approx(50.0)
    nothing_holds = {0: {small: trial(small, False, 90, 1, 0.8), medium: trial(medium, False, 90, 2, 0.85)},
                     1: {small: trial(small, False, 90, 1, 0.9), medium: trial(medium, False, 90, 2, 0.7)}}
    assert pick(nothing_holds).candidate == small  # worst seed 0.8 beats 0.7


def test_settings_and_order_of_calls() -> None:
    with pytest.raises(ConfigError, match="calibration_seeds"):
        StaticTunedPolicy(calibration_seeds=[])
    with pytest.raises(ConfigError, match="calibration_seeds"):
        StaticTunedPolicy(calibration_seeds=[0, 0])
    with pytest.raises(BaselineError, match="calibrate"):
        StaticTunedPolicy().reset(context(SCENARIO))
