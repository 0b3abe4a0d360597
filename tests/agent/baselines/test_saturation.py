"""``saturation``: WVA's saturation thresholds, spare triggers and the N−1 scale-down check."""

from __future__ import annotations

import pytest

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.baselines.saturation import SaturationSettings, saturation_change
from disaggpilot.env.testing import PoolSpecimen
from tests.agent.baselines.helpers import context, history, spec

DEFAULTS = SaturationSettings()


@pytest.mark.parametrize(("ready", "kv", "waiting", "change"), [
    (2, 0.85, 0.0, +1),   # saturated by KV (>= 0.8)
    (2, 0.10, 10.0, +1),  # saturated by queue (5 per replica)
    (2, 0.71, 0.0, +1),   # spare KV 0.09 < 0.1
    (2, 0.10, 4.2, +1),   # spare queue 5 − 2.1 = 2.9 < 3
    (2, 0.60, 0.0, 0),    # spares fine; on 1 replica KV would be 1.2: keep 2
    (4, 0.30, 2.0, -1),   # on 3: KV 0.4 (spare 0.4), queue 0.67 (spare 4.3): shrink
    (3, 0.30, 4.0, -1),   # on 2: spare queue 5 − 2 = 3 (not below the trigger), KV 0.45: shrink
    (3, 0.30, 4.5, 0),    # on 2: spare queue 5 − 2.25 = 2.75 < 3: keep 3
    (1, 0.00, 0.0, 0),    # one replica never shrinks
])
def test_saturation_change(ready: int, kv: float, waiting: float, change: int) -> None:
    assert saturation_change(DEFAULTS, ready, kv, waiting) == change


def test_policy_moves_one_replica_per_pool_and_holds_while_starting() -> None:
    policy = make_baseline("saturation")
    policy.reset(context())
    snapshots = history([spec(), spec(PoolSpecimen(ready=2, waiting=12), PoolSpecimen(ready=4, kv_usage=0.3))])
    action = policy.act(None, snapshots)  # type: ignore[arg-type]
    assert (action.pools["prefill"].replicas, action.pools["decode"].replicas) == (3, 3)
    snapshots = history([spec(), spec(PoolSpecimen(ready=2, starting=1, waiting=12), PoolSpecimen(ready=4))])
    action = policy.act(None, snapshots)  # type: ignore[arg-type]
    assert action.pools["prefill"].replicas == 3  # a replica is starting: wait for it
