"""``threshold``: HPA's ratio rule, scale-up limit, tolerance, cooldown and stabilisation window."""

from __future__ import annotations

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.baselines.threshold import hpa_desired
from disaggpilot.agent.policy import Policy
from disaggpilot.env.cluster_env import DisaggClusterEnv
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.testing import PoolSpecimen, ScriptedBackend, SnapshotSpec, make_snapshot
from tests.agent.baselines.helpers import context, pools
from tests.env.sim.conftest import small_scenario


def at(t: float, prefill: PoolSpecimen | None = None, decode: PoolSpecimen | None = None) -> MetricsSnapshot:
    """The interval ending at ``t`` seconds."""
    return make_snapshot(SnapshotSpec(pools=pools(prefill, decode)), max(0.0, t - 30.0), t)


def ready_threshold(**params: object) -> Policy:
    policy = make_baseline("threshold", **params)
    policy.reset(context())
    return policy


def targets(policy: Policy, snapshot: MetricsSnapshot) -> tuple[int | None, int | None]:
    action = policy.act(None, [snapshot])  # type: ignore[arg-type]
    return action.pools["prefill"].replicas, action.pools["decode"].replicas


def test_hpa_ratio_rule_and_tolerance() -> None:
    assert hpa_desired(current=2, total=12.0, target=2.0, tolerance=0.1) == 6
    assert hpa_desired(current=2, total=4.3, target=2.0, tolerance=0.1) == 2  # ratio 1.075: inside the band
    assert hpa_desired(current=2, total=4.5, target=2.0, tolerance=0.1) == 3  # ratio 1.125: ceil(2.25)
    assert hpa_desired(current=4, total=1.4, target=0.7, tolerance=0.1) == 2  # KV 0.35 mean on 4 replicas


def test_waiting_12_over_2_prefill_replicas_asks_6_and_is_capped_at_twice_current() -> None:
    policy = ready_threshold()
    assert targets(policy, at(30, prefill=PoolSpecimen(ready=2, waiting=12), decode=PoolSpecimen(kv_usage=0.7))) \
        == (4, 2)


def test_starting_replicas_count_as_replicas_with_no_load() -> None:
    policy = ready_threshold()
    prefill = PoolSpecimen(ready=2, starting=2, waiting=12)  # 12 / (4 × 2) = 1.5 → ceil(4 × 1.5) = 6
    assert targets(policy, at(30, prefill=prefill, decode=PoolSpecimen(kv_usage=0.7)))[0] == 6


def test_decode_scales_up_on_kv_usage_over_target() -> None:
    policy = ready_threshold()
    decode = PoolSpecimen(ready=3, kv_usage=0.95)  # 2.85 / 0.7 = 4.07 → 5
    assert targets(policy, at(30, prefill=PoolSpecimen(waiting=4), decode=decode)) == (2, 5)


def test_scale_down_waits_for_the_cooldown_then_takes_the_window_maximum() -> None:
    policy = ready_threshold()
    quiet = PoolSpecimen(ready=3, kv_usage=0.2)
    prefill = PoolSpecimen(waiting=4)  # exactly on target: prefill holds at 2 throughout
    assert targets(policy, at(60, prefill, PoolSpecimen(ready=3, kv_usage=0.5))) == (2, 3)  # wants 3 (0.5·3/0.7)
    for t in range(90, 300, 30):
        assert targets(policy, at(t, prefill, quiet)) == (2, 3), t  # wants 1, but cooling down
    assert targets(policy, at(300, prefill, quiet)) == (2, 3)  # cooldown over; max of the window is 3
    assert targets(policy, at(390, prefill, quiet)) == (2, 1)  # the 3 at t=60 left the 300 s window
    assert targets(policy, at(420, prefill, PoolSpecimen(ready=1, kv_usage=0.7))) == (2, 1)


def test_a_scale_up_restarts_the_cooldown_through_the_environment() -> None:
    def script(step: int) -> SnapshotSpec:
        decode = PoolSpecimen(kv_usage=0.95 if step == 1 else 0.1)
        return SnapshotSpec(pools=pools(PoolSpecimen(waiting=4), decode))
    env = DisaggClusterEnv(small_scenario(duration_s=600.0), backend_factory=lambda _: ScriptedBackend(script))
    observation, _ = env.reset(seed=0)
    policy = make_baseline("threshold")
    policy.reset(context(env.world))
    decode = []
    for _ in range(16):
        action = policy.act(observation, env.history)
        decode.append(action.pools["decode"].replicas)
        observation, *_ = env.step_targets(action)
    # t=0: hold (cooldown from the start); t=30: 0.95 on 2 → 3; from t=60 quiet, but the scale at t=30 holds
    # the pool until t=330, when the window [30, 330] still holds the 3 of t=30; t=360 drops to 1.
    assert decode == [2, 3] + [3] * 10 + [1] * 4
