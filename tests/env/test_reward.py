"""Reward terms computed exactly from hand-built snapshots (no simulator)."""

from __future__ import annotations

import pytest

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.reward import LagrangianConfig, RewardCalculator, RewardConfig, miss_budget_left
from disaggpilot.env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen, make_snapshot
from disaggpilot.env.workload import ArrivalSpec, TenantSpec

TENANTS = [TenantSpec(name="a", attainment_target=0.9), TenantSpec(name="b", attainment_target=0.99, weight=2.0)]


def snapshot(a: TenantSpecimen, b: TenantSpecimen, replicas: int = 2):
    spec = SnapshotSpec(tenants={"a": a, "b": b},
                        pools={"prefill": PoolSpecimen(ready=replicas), "decode": PoolSpecimen(ready=replicas)})
    return make_snapshot(spec, 0.0, 30.0)


def test_interval_terms_match_the_definition() -> None:
    calculator = RewardCalculator(RewardConfig(form="interval", reference_tokens_per_usd=1e5, slo_penalty=10.0,
                                               switching_cost=0.1, knob_change_cost=0.5), TENANTS)
    shot = snapshot(TenantSpecimen(met=8, missed=2, prompt_tokens=100, output_tokens=10),
                    TenantSpecimen(met=10, missed=0, prompt_tokens=50, output_tokens=50))
    reward, info = calculator(shot, replicas_changed=3, knobs_changed=1)
    cost = 16 * 30 * 3.0 / 3600  # 16 GPUs for 30 s at 3 USD/GPU-h
    goodput = 8 * 110 + 2.0 * 10 * 100
    assert info["econ/cost_usd"] == pytest.approx(cost)
    assert info["econ/tokens_per_dollar"] == pytest.approx(goodput / cost)
    assert info["reward/goodput_per_usd"] == pytest.approx(goodput / cost / 1e5)
    assert info["slo/a/attainment"] == pytest.approx(0.8)
    assert info["reward/slo_penalty"] == pytest.approx(-10.0 * 0.1)  # a is 0.1 below target, b meets it
    assert info["reward/switching_cost"] == pytest.approx(-(0.3 + 0.5))
    assert reward == pytest.approx(goodput / cost / 1e5 - 1.0 - 0.8)


def test_tenant_penalty_overrides_and_empty_intervals() -> None:
    calculator = RewardCalculator(RewardConfig(form="interval", tenant_penalties={"b": 100.0}), TENANTS)
    _, info = calculator(snapshot(TenantSpecimen(), TenantSpecimen(met=9, missed=1)), 0, 0)
    assert info["slo/a/attainment"] == 1.0 and info["slo/a/judged"] == 0  # nothing judged: no violation
    assert info["reward/slo_penalty"] == pytest.approx(-100.0 * (0.99 - 0.9))


def test_interval_lagrangian_multiplier_rises_under_violation_and_relaxes_with_slack() -> None:
    config = RewardConfig(form="interval", slo_penalty=1.0,
                          lagrangian=LagrangianConfig(enabled=True, kp=1.0, ki=1.0, kd=0.0))
    calculator = RewardCalculator(config, TENANTS)
    bad = snapshot(TenantSpecimen(met=5, missed=5), TenantSpecimen(met=10))
    lambdas = []
    for _ in range(3):
        calculator(bad, 0, 0)
        lambdas.append(calculator.lambdas["a"])
    assert lambdas[0] < lambdas[1] < lambdas[2]
    good = snapshot(TenantSpecimen(met=10), TenantSpecimen(met=10))
    for _ in range(50):
        calculator(good, 0, 0)
    assert calculator.lambdas["a"] == pytest.approx(1.0)  # back to the base once the slack pays off the debt


def test_bad_reward_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="reference_tokens_per_usd"):
        RewardConfig(reference_tokens_per_usd=0)
    with pytest.raises(ConfigError, match=r"lagrangian\.kp"):
        RewardConfig(lagrangian=LagrangianConfig(kp=-1.0))
    with pytest.raises(ConfigError, match=r"reward\.form='ratio'.*contract"):
        RewardConfig(form="ratio")
    with pytest.raises(ConfigError, match="slo_margin"):
        RewardConfig(slo_margin=1.0)


# ----- the contract form ---------------------------------------------------------------------------------
# Tenant "c" sends 1 request/s at a 0.9 target: 30 requests expected per 30 s interval, 2.5 misses allowed
# per 30 judged at target + margin (0.9 + 0.0 here, so the arithmetic stays exact).
CONTRACT_TENANTS = [TenantSpec(name="c", attainment_target=0.9, arrival=ArrivalSpec(rate_rps=1.0))]


def one_tenant(met: int, missed: int, tokens: int = 0) -> MetricsSnapshot:
    specimen = TenantSpecimen(met=met, missed=missed, prompt_tokens=tokens, output_tokens=0)
    spec = SnapshotSpec(tenants={"c": specimen},
                        pools={"prefill": PoolSpecimen(ready=1), "decode": PoolSpecimen(ready=1)})
    return make_snapshot(spec, 0.0, 30.0)


def contract(**settings: object) -> RewardCalculator:
    calculator = RewardCalculator(RewardConfig(slo_margin=0.0, **settings), CONTRACT_TENANTS)  # type: ignore[arg-type]
    calculator.reset()
    return calculator


def test_economics_is_goodput_over_the_price_minus_cost() -> None:
    calculator = contract(reference_tokens_per_usd=1e5, economics_scale_usd=0.5, switching_cost=0.1)
    shot = one_tenant(met=10, missed=0, tokens=100)
    reward, info = calculator(shot, replicas_changed=2, knobs_changed=0)
    goodput, cost = 10 * 100, 8 * 30 * 3.0 / 3600  # 2 replicas of 4 GPUs for 30 s at 3 USD/GPU-h
    assert info["reward/econ"] == pytest.approx((goodput / 1e5 - cost) / 0.5)
    assert info["reward/goodput_per_usd"] == pytest.approx(goodput / cost / 1e5)  # the interval form's, for reference
    assert info["reward/slo_penalty"] == 0.0  # 10 of 10 met
    assert reward == pytest.approx(info["reward/econ"] - 0.2)


def test_a_burst_inside_an_episode_above_target_costs_nothing_in_the_end() -> None:
    calculator = contract(slo_penalty=10.0)
    quiet, burst = one_tenant(met=30, missed=0), one_tenant(met=20, missed=10)
    penalties = [-calculator(shot, 0, 0)[1]["reward/slo_penalty"] for shot in (burst, quiet, quiet, quiet)]
    # the burst: 10 - 0.1 x 30 = 7 requests over, 7/30 of an interval's expected requests; the quiet intervals
    # bank 3 each and pay it back; the interval form would charge 10 x 0.233 for the burst and keep it
    assert penalties[0] == pytest.approx(10.0 * 7 / 30)
    assert penalties[1] == pytest.approx(-10.0 * 3 / 30) and penalties[2] == pytest.approx(-10.0 * 3 / 30)
    assert penalties[3] == pytest.approx(-10.0 * 1 / 30)  # only what was still owed: surplus earns nothing
    assert sum(penalties) == pytest.approx(0.0)  # 100 of 120 missed 10: 0.917 >= 0.9
    info = calculator(quiet, 0, 0)[1]
    assert info["slo/c/episode_constraint"] == pytest.approx((7 - 3 * 4) / 30)
    assert info["reward/slo/c"] == 0.0 and info["slo/c/miss_budget_left"] == pytest.approx(1 - 10 / (0.1 * 150))


def test_an_episode_below_target_pays_lambda_times_its_constraint() -> None:
    calculator = contract(slo_penalty=10.0)
    shots = [one_tenant(met=25, missed=5), one_tenant(met=27, missed=3)]
    total = sum(calculator(shot, 0, 0)[1]["reward/slo_penalty"] for shot in shots)
    assert total == pytest.approx(-10.0 * ((5 - 3) + (3 - 3)) / 30)  # 52 of 60: the hinge of the episode sum


def test_without_the_clip_surplus_earns_credit() -> None:
    calculator = contract(slo_penalty=10.0, clip_episode_credit=False)
    assert calculator(one_tenant(met=30, missed=0), 0, 0)[1]["reward/slo_penalty"] == pytest.approx(10.0 * 3 / 30)


def test_the_margin_moves_the_constraint() -> None:
    calculator = RewardCalculator(RewardConfig(slo_margin=0.05), CONTRACT_TENANTS)
    calculator.reset()
    info = calculator(one_tenant(met=27, missed=3), 0, 0)[1]  # 0.9 attainment: at target, 0.05 short of 0.95
    assert info["slo/c/constraint"] == pytest.approx((3 - 0.05 * 30) / 30)
    assert info["slo/c/miss_budget_left"] == pytest.approx(0.0)  # the budget is the contract's, without the margin


def test_contract_lambda_moves_once_per_episode_from_the_episode_attainment() -> None:
    calculator = contract(slo_penalty=1.0, lagrangian=LagrangianConfig(enabled=True, kp=100.0, ki=10.0, kd=0.0))
    for _ in range(3):
        calculator(one_tenant(met=24, missed=6), 0, 0)  # 0.8: 0.1 below target
        assert calculator.lambdas["c"] == 1.0  # constant within the episode, so the hinge telescopes
    calculator.reset()
    assert calculator.lambdas["c"] == pytest.approx(1.0 + 100.0 * 0.1 + 10.0 * 0.1)
    for _ in range(30):
        calculator(one_tenant(met=30, missed=0), 0, 0)
        calculator.reset()
    assert calculator.lambdas["c"] == pytest.approx(1.0)  # held episodes pay the integral back


def test_miss_budget_left() -> None:
    assert miss_budget_left(0.0, 0.0, 0.95) == 1.0
    assert miss_budget_left(95.0, 5.0, 0.95) == pytest.approx(0.0)
    assert miss_budget_left(98.0, 2.0, 0.95) == pytest.approx(0.6)
    assert miss_budget_left(90.0, 10.0, 0.95) == pytest.approx(-1.0)
    assert miss_budget_left(9.0, 1.0, 1.0) == -float("inf")
