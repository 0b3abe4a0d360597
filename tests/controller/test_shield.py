"""The shield, rule by rule: each test turns one rule on over an otherwise permissive shield."""

from __future__ import annotations

from typing import Any

import pytest

from disaggpilot.controller.config import PoolBounds, ShieldConfig
from disaggpilot.controller.shield import Shield, ShieldOutcome, ShieldState
from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen, make_snapshot

NOW = 1000.0
PREVIOUS = {"prefill": 4, "decode": 4}


def make_shield(**overrides: Any) -> Shield:
    base: dict[str, Any] = {
        "pools": {"prefill": PoolBounds(1, 8), "decode": PoolBounds(1, 8)}, "gpu_budget": 128, "max_step": 8,
        "up_cooldown_s": 0.0, "down_cooldown_s": 0.0, "down_hysteresis_intervals": 1,
        "hold_down_while_starting": False, "tenant_floors": False,
    }
    return Shield(ShieldConfig(**{**base, **overrides}), {"chat": 0.95})


def snapshot(starting: int = 0, draining: int = 0, met: int = 100, missed: int = 0) -> MetricsSnapshot:
    pools = {"prefill": PoolSpecimen(ready=4 - starting, starting=starting),
             "decode": PoolSpecimen(ready=4, draining=draining)}
    spec = SnapshotSpec(tenants={"chat": TenantSpecimen(arrived=100, met=met, missed=missed)}, pools=pools)
    return make_snapshot(spec, NOW - 30.0, NOW)


def shielded(shield: Shield, prefill: int, decode: int, snap: MetricsSnapshot | None = None,
             state: ShieldState | None = None) -> ShieldOutcome:
    return shield.apply(ClusterAction.replicas(prefill=prefill, decode=decode), snap or snapshot(), PREVIOUS,
                        NOW, state or ShieldState())


def replicas(outcome: ShieldOutcome) -> tuple[int | None, int | None]:
    return outcome.action.pools["prefill"].replicas, outcome.action.pools["decode"].replicas


def test_a_permissive_shield_changes_nothing_and_keeps_the_knobs() -> None:
    action = ClusterAction({"prefill": PoolTarget(replicas=6, max_num_batched_tokens=4096),
                            "decode": PoolTarget(replicas=3, max_num_seqs=128)})
    outcome = make_shield().apply(action, snapshot(), PREVIOUS, NOW, ShieldState())
    assert outcome.action == action and outcome.reasons == ()


def test_bounds_clip_to_each_pools_min_and_max() -> None:
    outcome = shielded(make_shield(max_step=32), prefill=20, decode=0)
    assert replicas(outcome) == (8, 1) and outcome.reasons == ("bounds",)


def test_the_gpu_budget_trims_the_largest_increase_first() -> None:
    outcome = shielded(make_shield(gpu_budget=40), prefill=7, decode=5)  # 48 GPUs asked at TP 4
    assert replicas(outcome) == (5, 5) and outcome.reasons == ("gpu_budget",)


def test_the_gpu_budget_counts_draining_replicas_and_never_forces_a_scale_down() -> None:
    outcome = shielded(make_shield(gpu_budget=40), prefill=6, decode=4, snap=snapshot(draining=1))
    assert replicas(outcome) == (5, 4)  # 4 GPUs draining: room for one more prefill replica only
    outcome = shielded(make_shield(gpu_budget=16), prefill=4, decode=4)  # already over: hold, no forced cut
    assert replicas(outcome) == (4, 4) and outcome.reasons == ()


def test_max_step_limits_the_change_per_interval() -> None:
    outcome = shielded(make_shield(max_step=2), prefill=8, decode=1)
    assert replicas(outcome) == (6, 2) and outcome.reasons == ("max_step",)


def test_up_cooldown_holds_a_scale_up_until_it_has_passed() -> None:
    shield = make_shield(up_cooldown_s=60.0)
    recent = ShieldState(last_up_s={"prefill": NOW - 30.0})
    outcome = shielded(shield, prefill=6, decode=6, state=recent)
    assert replicas(outcome) == (4, 6) and outcome.reasons == ("up_cooldown",)
    later = ShieldState(last_up_s={"prefill": NOW - 61.0})
    assert replicas(shielded(shield, prefill=6, decode=6, state=later)) == (6, 6)


def test_down_cooldown_follows_any_change_and_spares_scale_ups() -> None:
    shield = make_shield(down_cooldown_s=300.0)
    recent = ShieldState(last_change_s={"prefill": NOW - 100.0, "decode": NOW - 100.0})
    outcome = shielded(shield, prefill=2, decode=6, state=recent)
    assert replicas(outcome) == (4, 6) and outcome.reasons == ("down_cooldown",)
    later = ShieldState(last_change_s={"prefill": NOW - 301.0})
    assert replicas(shielded(shield, prefill=2, decode=4, state=later)) == (2, 4)


def test_record_starts_cooldowns_only_for_the_pools_an_applied_action_changed() -> None:
    shield = make_shield()
    state = shield.record(ShieldState(), PREVIOUS, ClusterAction.replicas(prefill=6, decode=4), NOW)
    assert state.last_up_s == {"prefill": NOW} and state.last_change_s == {"prefill": NOW}
    state = shield.record(state, {"prefill": 6, "decode": 4}, ClusterAction.replicas(prefill=6, decode=2), NOW + 30)
    assert state.last_up_s == {"prefill": NOW} and state.last_change_s == {"prefill": NOW, "decode": NOW + 30}


def test_hysteresis_scales_down_only_after_consecutive_requests() -> None:
    shield, state = make_shield(down_hysteresis_intervals=3), ShieldState()
    results = []
    for _ in range(3):
        outcome = shielded(shield, prefill=3, decode=4, state=state)
        state = outcome.state
        results.append((replicas(outcome)[0], outcome.reasons))
    assert results == [(4, ("hysteresis",)), (4, ("hysteresis",)), (3, ())]
    state = shielded(shield, prefill=4, decode=4, state=state).state  # the policy stops asking: the streak resets
    assert state.down_streak["prefill"] == 0
    assert shielded(shield, prefill=3, decode=4, state=state).reasons == ("hysteresis",)


def test_no_scale_down_while_the_pools_replicas_are_starting() -> None:
    outcome = shielded(make_shield(hold_down_while_starting=True), prefill=2, decode=2, snap=snapshot(starting=1))
    assert replicas(outcome) == (4, 2) and outcome.reasons == ("starting",)  # decode has none starting


@pytest.mark.parametrize(("met", "missed", "held"), [(90, 10, True), (94, 6, False), (0, 0, False)])
def test_tenant_floors_forbid_scale_downs_below_target_minus_margin(met: int, missed: int, held: bool) -> None:
    shield = make_shield(tenant_floors=True, tenant_floor_margin=0.02)  # chat: target 0.95, floor 0.93
    outcome = shielded(shield, prefill=2, decode=6, snap=snapshot(met=met, missed=missed))
    assert replicas(outcome) == ((4, 6) if held else (2, 6))  # scale-ups always pass
    assert outcome.reasons == (("tenant_floor",) if held else ())


def test_bounds_override_the_holds() -> None:
    shield = make_shield(down_hysteresis_intervals=5, pools={"prefill": PoolBounds(1, 3), "decode": PoolBounds(1, 8)})
    outcome = shielded(shield, prefill=2, decode=4)
    assert replicas(outcome) == (3, 4) and outcome.reasons == ("hysteresis", "bounds")


def test_a_pool_without_bounds_is_dropped() -> None:
    action = ClusterAction.replicas(prefill=4, decode=4, aggregated=2)
    outcome = make_shield().apply(action, snapshot(), PREVIOUS, NOW, ShieldState())
    assert set(outcome.action.pools) == {"prefill", "decode"} and outcome.reasons == ("unknown_pool",)


def test_a_blind_interval_holds_scale_downs_allows_scale_ups_and_resets_the_streak() -> None:
    shield = make_shield(down_hysteresis_intervals=2)
    counted = shielded(shield, prefill=2, decode=2).state  # one fresh interval asking down: streak 1
    outcome = shield.apply(ClusterAction.replicas(prefill=2, decode=6), snapshot(), PREVIOUS, NOW, counted,
                           blind=True)
    assert replicas(outcome) == (4, 6) and outcome.reasons == ("blind",)
    assert outcome.state.down_streak == {"prefill": 0, "decode": 0}
    assert replicas(shielded(shield, prefill=2, decode=2, state=outcome.state)) == (4, 4)  # streak 1 of 2 again
