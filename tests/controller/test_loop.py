"""The loop in virtual time: the policy in control, every fallback reason and the way back, retries, modes."""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from disaggpilot.agent.bundle import load_bundle, save_bundle
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.controller.actuators import DryRunActuator
from disaggpilot.controller.app import Settings, build_loop
from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.decision import Decision
from disaggpilot.controller.errors import ActuatorError, TemporaryError
from disaggpilot.controller.logs import JsonFormatter
from disaggpilot.controller.policies import load_policy
from disaggpilot.controller.testing import FixedPolicy, FlakyActuator
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.metrics import KV_USAGE, PROMPT_TOKENS, MetricsSnapshot
from disaggpilot.env.testing import ScriptedBackend
from tests.bundles import COLD_START_OBSERVATION
from tests.controller.conftest import INTERVAL_S, Rig, config, healthy_spec, make_rig
from tests.env.sim.conftest import small_scenario

HOLD_STILL = {"prefill": 2, "decode": 2}


def trail(decisions: list[Decision]) -> list[tuple[str, str | None, bool]]:
    return [(d.source, d.reason, d.recovering) for d in decisions]


def fallbacks(rig: Rig, reason: str) -> float | None:
    return rig.metrics.registry.get_sample_value("disaggpilot_controller_fallback_total", {"reason": reason})


# ----- the policy in control ------------------------------------------------------------------------------
def test_a_bundle_policy_decides_every_interval_when_all_is_healthy(bundle_dir: Path) -> None:
    rig = make_rig(PpoPolicy(bundle_dir))
    decisions = rig.run(4)
    assert trail(decisions) == [("policy", None, False)] * 4
    assert all(d.applied and d.policy_action is not None for d in decisions)
    assert isinstance(rig.actuator, FlakyActuator) and rig.actuator.applied == [d.action for d in decisions]
    assert rig.clock.now() == pytest.approx(4 * INTERVAL_S)
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_decisions_total") == 4


def test_the_shield_sits_between_the_policy_and_the_actuator() -> None:
    rig = make_rig(FixedPolicy({"prefill": 8, "decode": 2}), config(shield={"max_step": 2}))
    first, second = rig.run(2)
    assert first.policy_action is not None and first.policy_action.pools["prefill"].replicas == 8
    assert first.action is not None and first.action.pools["prefill"].replicas == 4
    assert first.shield_reasons == ("max_step",)
    assert second.action is not None and second.action.pools["prefill"].replicas == 6  # the backend followed
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_desired_replicas", {"pool": "prefill"}) == 6


# ----- every fallback reason, and the way back -------------------------------------------------------------
def _stale(s: MetricsSnapshot) -> None:
    s.start_s, s.end_s = s.start_s - 200.0, s.end_s - 200.0


def _nan(s: MetricsSnapshot) -> None:
    s.pools["decode"].gauges[KV_USAGE] = math.nan


def _missing(s: MetricsSnapshot) -> None:
    del s.tenants["summarise"]


def _out_of_range(s: MetricsSnapshot) -> None:
    s.pools["prefill"].counters[PROMPT_TOKENS] = -5.0


@pytest.mark.parametrize(("edit", "reason"), [(_stale, "stale"), (_nan, "nan"), (_missing, "missing_series"),
                                              (_out_of_range, "out_of_range")])
def test_an_invalid_snapshot_hands_over_to_the_fallback_until_recovery(
        edit: Callable[[MetricsSnapshot], None], reason: str) -> None:
    rig = make_rig(FixedPolicy(HOLD_STILL), tamper={2: edit})
    decisions = rig.run(5)
    assert trail(decisions) == [("policy", None, False), ("fallback", reason, False), ("fallback", reason, True),
                                ("fallback", reason, True), ("policy", None, False)]
    assert not decisions[1].snapshot_valid and decisions[1].detail
    assert decisions[1].fallback_action is not None and decisions[1].applied
    assert fallbacks(rig, reason) == 3


def test_a_policy_exception_hands_over_to_the_fallback_until_recovery() -> None:
    rig = make_rig(FixedPolicy(HOLD_STILL, failing=[2]))
    decisions = rig.run(5)
    assert trail(decisions) == [("policy", None, False), ("fallback", "policy_error", False),
                                ("fallback", "policy_error", True), ("fallback", "policy_error", True),
                                ("policy", None, False)]
    assert decisions[1].detail == "RuntimeError: policy failure on call 2"


def test_a_failed_scrape_falls_back_and_a_temporary_one_is_retried() -> None:
    rig = make_rig(FixedPolicy(HOLD_STILL), errors={2: RuntimeError("connection refused by the source")})
    assert trail(rig.run(2))[1] == ("fallback", "scrape_error", False)
    retrying = make_rig(FixedPolicy(HOLD_STILL), config(fallback={"backoff": {"attempts": 3}}),
                        errors={2: TemporaryError("scrape timed out", delay_s=0.5)})
    assert trail(retrying.run(2)) == [("policy", None, False)] * 2
    assert 1.0 in retrying.clock.sleeps  # the first wait of the backoff schedule


def test_a_bundle_that_does_not_match_runs_the_fallback_for_good(bundle_dir: Path) -> None:
    settings = config(interval_s=60.0, bundle=str(bundle_dir))  # the bundle was trained at 30 s
    policy, problem = load_policy(settings, small_scenario(), EnvConfig(interval_s=60.0))
    assert policy is None and problem is not None
    assert problem.reason == "bundle_mismatch" and "interval_s" in problem.detail
    rig = make_rig(None, settings, startup_problem=problem)
    assert trail(rig.run(6)) == [("fallback", "bundle_mismatch", False)] * 6
    assert fallbacks(rig, "bundle_mismatch") == 6


def test_a_bundle_observing_a_feature_this_version_lacks_runs_the_fallback_naming_it(bundle_dir: Path,
                                                                                      tmp_path: Path) -> None:
    bundle = load_bundle(bundle_dir)
    spec = {**bundle.spec, "observation_features": [*bundle.spec["observation_features"], "cluster/foo"]}
    odd = save_bundle(tmp_path / "odd", bundle.model_path, bundle.normalization(), spec, "seed: 0\n").path
    policy, problem = load_policy(config(bundle=str(odd)), small_scenario(), EnvConfig())
    assert policy is None and problem is not None and problem.reason == "bundle_mismatch"
    assert "the bundle observes 'cluster/foo', which this version does not compute" in problem.detail


def test_a_pinned_hash_is_enforced_and_a_matching_bundle_loads(bundle_dir: Path) -> None:
    wrong = config(bundle=str(bundle_dir), expected_hash="0" * 64)
    policy, problem = load_policy(wrong, small_scenario(), EnvConfig())
    assert policy is None and problem is not None and problem.reason == "bundle_mismatch"
    policy, problem = load_policy(config(bundle=str(bundle_dir)), small_scenario(), EnvConfig())
    assert isinstance(policy, PpoPolicy) and problem is None


def test_a_headroom_mode_bundle_loads_and_sizes_the_pools_every_interval(headroom_bundle_dir: Path,
                                                                         bundle_dir: Path) -> None:
    policy, problem = load_policy(config(bundle=str(headroom_bundle_dir)), small_scenario(), EnvConfig())
    assert isinstance(policy, PpoPolicy) and policy.sizer is not None and problem is None
    decisions = make_rig(policy).run(3)
    assert trail(decisions) == [("policy", None, False)] * 3
    for decision in decisions:  # utilisation levels become replica counts; the knobs keep their values
        assert decision.policy_action is not None
        assert {role: (t.replicas is not None, t.max_num_batched_tokens, t.max_num_seqs)
                for role, t in decision.policy_action.pools.items()} == {"prefill": (True, None, None),
                                                                        "decode": (True, None, None)}
    # The action mode is read from each bundle: a delta bundle still loads beside it.
    assert load_policy(config(bundle=str(bundle_dir)), small_scenario(), EnvConfig())[1] is None


def test_actuator_failures_hand_over_to_the_fallback_then_back_to_the_policy() -> None:
    rig = make_rig(FixedPolicy(HOLD_STILL))
    rig.actuator = rig.loop.actuator = FlakyActuator(failing=[2, 3], backend=rig.backend)
    decisions = rig.run(6)
    assert trail(decisions) == [("policy", None, False)] * 3 + [("fallback", "actuator", True)] * 2 + [
        ("policy", None, False)]
    assert [d.applied for d in decisions] == [True, False, False, True, True, True]
    assert decisions[1].actuator_error == "TemporaryError: the API server answered 503"


def test_a_permanent_actuator_error_falls_back_at_once() -> None:
    rig = make_rig(FixedPolicy(HOLD_STILL))
    rig.actuator = rig.loop.actuator = FlakyActuator(failing=[2], error=lambda: ActuatorError("forbidden"),
                                                     backend=rig.backend)
    assert [d.source for d in rig.run(3)] == ["policy", "policy", "fallback"]


def test_temporary_actuator_errors_are_retried_on_the_backoff_schedule() -> None:
    settings = config(fallback={"backoff": {"attempts": 3, "initial_s": 1.0, "multiplier": 2.0, "max_s": 8.0}})
    rig = make_rig(FixedPolicy(HOLD_STILL), settings)
    flaky = FlakyActuator(failing=[2, 3], backend=rig.backend)
    rig.actuator = rig.loop.actuator = flaky
    decisions = rig.run(2)
    assert [d.applied for d in decisions] == [True, True] and len(flaky.calls) == 4
    assert [s for s in rig.clock.sleeps if 0 < s < INTERVAL_S] == [1.0, 2.0]
    slow = FlakyActuator(failing=[1], error=lambda: TemporaryError("throttled", delay_s=5.0), backend=rig.backend)
    rig.actuator = rig.loop.actuator = slow
    rig.run(1)
    assert 5.0 in rig.clock.sleeps  # the error's own delay wins over the schedule's 1 s


def test_when_the_fallback_fails_too_the_targets_are_held() -> None:
    rig = make_rig(FixedPolicy(HOLD_STILL, failing=[2]), fallback=FixedPolicy(HOLD_STILL, failing=range(1, 99)))
    decisions = rig.run(2)
    assert decisions[1].source == "hold" and decisions[1].action is None and decisions[1].reason == "policy_error"
    assert isinstance(rig.actuator, FlakyActuator) and len(rig.actuator.calls) == 1


# ----- modes --------------------------------------------------------------------------------------------------
def test_shadow_mode_decides_and_reports_but_never_calls_the_actuator(bundle_dir: Path) -> None:
    rig = make_rig(PpoPolicy(bundle_dir), config(mode="shadow"), tamper={3: _nan})
    decisions = rig.run(5)
    assert isinstance(rig.actuator, FlakyActuator) and rig.actuator.calls == []
    assert all(d.action is not None and not d.applied for d in decisions)
    assert {d.source for d in decisions} == {"policy", "fallback"}
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_applied_actions_total") == 0


# ----- the decision log ----------------------------------------------------------------------------------
@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("disaggpilot.controller")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_one_json_line_per_decision_carries_inputs_actions_reason_mode_and_latency(
        bundle_dir: Path, log_lines: io.StringIO) -> None:
    rig = make_rig(PpoPolicy(bundle_dir), tamper={2: _nan})
    rig.run(2)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    decisions = [line for line in lines if line["message"] == "decision"]
    assert len(decisions) == 2
    first, second = decisions
    assert first["inputs"]["tenants"]["chat"] == {"arrival_rps": 4.0, "attainment": 1.0}
    assert first["inputs"]["pools"]["prefill"]["ready"] == 2
    assert set(first["policy_action"]) == {"prefill", "decode"} and first["shielded_action"] is not None
    assert first["mode"] == "active" and first["source"] == "policy" and first["reason"] is None
    assert first["latency_ms"] > 0 and first["applied"] is True
    assert second["reason"] == "nan" and second["source"] == "fallback" and "kv_cache_usage_perc" in second["detail"]
    assert second["inputs"]["pools"]["decode"]["kv_usage"] is None  # NaN is logged as null, the line stays JSON
    assert any(line.get("event") == "fallback" for line in lines)


def test_the_dry_run_actuator_only_logs_and_records() -> None:
    dry = DryRunActuator()
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}), actuator=dry)
    decisions = rig.run(2)
    assert all(d.applied for d in decisions) and dry.applied == [d.action for d in decisions]
    assert rig.backend.actions == []  # nothing reached the cluster


def test_a_bundle_brings_the_observation_it_was_trained_on(cold_start_bundle_dir: Path) -> None:
    # The config does not ask for the opt-in cold-start feature; the bundle's config.yaml does.
    assert not EnvConfig().observation.cold_start_feature
    settings = config(bundle=str(cold_start_bundle_dir))
    policy, problem = load_policy(settings, small_scenario(), EnvConfig())
    assert isinstance(policy, PpoPolicy) and problem is None
    loop = build_loop(Settings(settings, EnvConfig(interval_s=INTERVAL_S), small_scenario(), None, 0, None,
                               VirtualClock()), ScriptedBackend([healthy_spec()]), None)
    assert loop.observer.names == load_bundle(cold_start_bundle_dir).spec["observation_features"]
    assert loop.observer.names[-1] == "cluster/cold_start"
    assert loop.env_config.observation == replace(COLD_START_OBSERVATION, features=loop.observer.names)
    loop.run(2)
    assert loop.last_decision is not None and loop.last_decision.source == "policy"
