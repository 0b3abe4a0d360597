"""Reward terms computed exactly from hand-built snapshots (no simulator)."""

from __future__ import annotations

import pytest

from env.errors import ConfigError
from env.reward import LagrangianConfig, RewardCalculator, RewardConfig
from env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen, make_snapshot
from env.workload import TenantSpec

TENANTS = [TenantSpec(name="a", attainment_target=0.9), TenantSpec(name="b", attainment_target=0.99, weight=2.0)]


def snapshot(a: TenantSpecimen, b: TenantSpecimen, replicas: int = 2):
    spec = SnapshotSpec(tenants={"a": a, "b": b},
                        pools={"prefill": PoolSpecimen(ready=replicas), "decode": PoolSpecimen(ready=replicas)})
    return make_snapshot(spec, 0.0, 30.0)


def test_terms_match_the_definition() -> None:
    calculator = RewardCalculator(RewardConfig(reference_tokens_per_usd=1e5, slo_penalty=10.0, switching_cost=0.1,
                                               knob_change_cost=0.5), TENANTS)
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
    calculator = RewardCalculator(RewardConfig(tenant_penalties={"b": 100.0}), TENANTS)
    _, info = calculator(snapshot(TenantSpecimen(), TenantSpecimen(met=9, missed=1)), 0, 0)
    assert info["slo/a/attainment"] == 1.0 and info["slo/a/judged"] == 0  # nothing judged: no violation
    assert info["reward/slo_penalty"] == pytest.approx(-100.0 * (0.99 - 0.9))


def test_lagrangian_multiplier_rises_under_violation_and_relaxes_with_slack() -> None:
    config = RewardConfig(slo_penalty=1.0, lagrangian=LagrangianConfig(enabled=True, kp=1.0, ki=1.0, kd=0.0))
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
        RewardConfig(lagrangian={"kp": -1.0})  # type: ignore[arg-type]
