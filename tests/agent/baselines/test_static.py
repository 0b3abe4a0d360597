"""``static``: the scenario's configuration, or the pinned one, every interval."""

from __future__ import annotations

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.env.backend import PoolTarget
from tests.agent.baselines.helpers import context, history, spec
from tests.env.sim.conftest import small_scenario


def test_default_keeps_the_initial_replicas_and_knobs() -> None:
    policy = make_baseline("static")
    policy.reset(context(small_scenario(prefill=3, decode=5)))
    action = policy.act(None, history([spec(), spec()]))  # type: ignore[arg-type]
    assert action.pools == {"prefill": PoolTarget(3, 8192, None), "decode": PoolTarget(5, None, 256)}


def test_pinned_settings_override_the_scenario() -> None:
    policy = make_baseline("static", prefill_replicas=1, decode_replicas=6, max_num_batched_tokens=4096,
                           max_num_seqs=64)
    policy.reset(context())
    action = policy.act(None, history([spec()]))  # type: ignore[arg-type]
    assert action.pools == {"prefill": PoolTarget(1, 4096, None), "decode": PoolTarget(6, None, 64)}


def test_an_aggregated_cluster_gets_its_one_pool() -> None:
    policy = make_baseline("static", aggregated_replicas=3)
    policy.reset(context(small_scenario(prefill=0, decode=0, aggregated=2)))
    action = policy.act(None, history([spec()]))  # type: ignore[arg-type]
    assert action.pools == {"aggregated": PoolTarget(3, 8192, 256)}
