"""Blind intervals (no fresh valid snapshot): the shield allows hold or scale-up only, blind intervals do not
count toward the scale-down hysteresis, and a metrics source that fails from the start holds and retries.

Issue 21, finding 2: with Prometheus down mid-run the fallback planned from old history and the shield let
prefill go 6→4 and decode 3→1; with Prometheus down at start-up the daemon exited with a traceback.
"""

from __future__ import annotations

from disaggpilot.agent.baselines.headroom_planner import HeadroomPlannerPolicy
from disaggpilot.controller.decision import Decision, replicas_of
from disaggpilot.controller.errors import TemporaryError
from disaggpilot.controller.testing import FixedPolicy, FlakyActuator
from disaggpilot.env.metrics import MetricsSnapshot
from tests.controller.conftest import Rig, config, healthy_spec, make_rig

BLIND = TemporaryError("Prometheus: connection refused", delay_s=0.0)
"""What a scrape of an unreachable Prometheus raises (a temporary error: retried, then the decision is blind)."""


def targets(decisions: list[Decision]) -> list[dict[str, int] | None]:
    return [replicas_of(d.action) if d.action is not None else None for d in decisions]


def test_a_scrape_that_fails_mid_run_never_scales_down() -> None:
    # The policy holds 6/3; the fallback, planning from the last snapshot kept, asks for 4/1 while blind.
    settings = config(shield={"down_hysteresis_intervals": 1, "max_step": 2})
    rig = make_rig(FixedPolicy({"prefill": 6, "decode": 3}), settings, errors={n: BLIND for n in range(2, 6)},
                   fallback=FixedPolicy({"prefill": 4, "decode": 1}), spec=healthy_spec(prefill=6, decode=3))
    decisions = rig.run(5)
    assert [(d.source, d.reason, d.snapshot_valid) for d in decisions[1:]] == [("fallback", "scrape_error", False)] * 4
    assert targets(decisions) == [{"prefill": 6, "decode": 3}] * 5
    assert all("blind" in d.shield_reasons for d in decisions[1:])
    assert rig.backend.actions == [] or all(replicas_of(a) == {"prefill": 6, "decode": 3} for a in rig.backend.actions)


def test_a_blind_interval_may_still_scale_up() -> None:
    rig = make_rig(FixedPolicy({"prefill": 2, "decode": 2}), errors={2: BLIND},
                   fallback=FixedPolicy({"prefill": 4, "decode": 1}))
    blind = rig.run(2)[1]
    assert blind.reason == "scrape_error" and targets([blind]) == [{"prefill": 4, "decode": 2}]


def test_blind_intervals_do_not_count_toward_the_scale_down_hysteresis() -> None:
    # Hysteresis 3: three blind intervals asking down must not add up to a scale-down; after them the
    # scale-down needs three intervals of fresh data (decisions 5, 6, 7), and happens on the third.
    settings = config(shield={"down_hysteresis_intervals": 3}, fallback={"recovery_intervals": 10})
    rig = make_rig(FixedPolicy({"prefill": 4, "decode": 4}), settings, errors={n: BLIND for n in (2, 3, 4)},
                   fallback=FixedPolicy({"prefill": 2, "decode": 2}), spec=healthy_spec(prefill=4, decode=4))
    decisions = rig.run(7)
    assert [d.snapshot_valid for d in decisions] == [True, False, False, False, True, True, True]
    assert targets(decisions) == [{"prefill": 4, "decode": 4}] * 6 + [{"prefill": 2, "decode": 2}]
    assert "hysteresis" in decisions[4].shield_reasons and "hysteresis" in decisions[5].shield_reasons


def test_the_headroom_fallback_planning_from_old_history_cannot_scale_down_while_blind() -> None:
    # The real fallback planner: its demand window holds the last snapshots it saw, then the scrapes fail.
    settings = config(shield={"down_hysteresis_intervals": 1, "max_step": 2}, fallback={"recovery_intervals": 10})
    rig = make_rig(FixedPolicy({"prefill": 6, "decode": 3}), settings, errors={n: BLIND for n in range(3, 13)},
                   spec=healthy_spec(prefill=6, decode=3))
    assert isinstance(rig.loop.fallback, HeadroomPlannerPolicy)
    decisions = rig.run(12)
    for decision in decisions[2:]:
        assert decision.reason == "scrape_error" and decision.action is not None
        wanted = replicas_of(decision.action)
        assert wanted["prefill"] >= 6 and wanted["decode"] >= 3


# ----- start-up without metrics ---------------------------------------------------------------------------
class FailingFirst:
    """A source whose first ``failures`` scrapes (``reset`` or ``advance``) raise, then answers."""

    def __init__(self, rig: Rig, failures: int) -> None:
        self.inner, self.failures, self.tries = rig.backend, failures, 0

    def _try(self) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise ConnectionError("Prometheus: connection refused")

    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        self._try()
        return self.inner.reset(seed)

    def advance(self, seconds: float) -> MetricsSnapshot:
        self._try()
        return self.inner.advance(seconds)


def test_an_unreachable_source_at_start_up_holds_reports_and_retries_every_interval() -> None:
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}))
    source = FailingFirst(rig, failures=3)
    rig.loop.source = source
    rig.loop.start()  # no exception: the daemon keeps running
    decisions = rig.run(5)
    # start() and decisions 1, 2 fail; decision 3's retry succeeds (the first snapshot: still a hold), then act.
    assert [d.source for d in decisions] == ["hold", "hold", "hold", "policy", "policy"]
    assert [d.reason for d in decisions[:2]] == ["scrape_error", "scrape_error"]
    assert all(d.action is None and not d.applied for d in decisions[:3])
    assert isinstance(rig.actuator, FlakyActuator) and rig.actuator.calls == [d.action for d in decisions[3:]]
    assert targets(decisions[3:]) == [{"prefill": 3, "decode": 2}] * 2
    assert source.tries == 3 + 1 + 2  # one try per interval (backoff attempts=1): 3 refused, the first, 2 more
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_fallback_total",
                                                 {"reason": "scrape_error"}) == 2
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_startup_scrape_pending") == 0
