"""Validation's score: the shortfall counts from each target plus the configured margin."""

from __future__ import annotations

import pytest

from agent.baselines import make_baseline
from agent.errors import PolicyConfigError
from agent.training.config import RunConfig
from agent.training.validation import aggregate, run_policy_episode
from env.cluster_env import EnvConfig
from env.reward import RewardConfig
from env.scenario import load_scenario


def test_the_attainment_margin_raises_each_tenants_bar() -> None:
    summary = run_policy_episode(make_baseline("headroom_planner"), load_scenario("steady"), 0,
                                 EnvConfig(horizon_s=1800.0), RewardConfig(), None)
    margin = 0.05
    expected = sum(max(0.0, row.target + margin - row.attainment) for row in summary.tenants)
    assert aggregate([summary], margin).shortfall == pytest.approx(expected)
    assert aggregate([summary], margin).shortfall > aggregate([summary]).shortfall  # some tenant is within 5 points
    assert aggregate([summary], margin).tokens_per_usd == aggregate([summary]).tokens_per_usd


def test_a_negative_margin_names_the_field() -> None:
    with pytest.raises(PolicyConfigError, match=r"run\.validation_attainment_margin=-0\.01 is invalid"):
        RunConfig(validation_attainment_margin=-0.01)
