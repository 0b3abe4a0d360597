"""The registry: names, construction from keyword settings, validation messages."""

from __future__ import annotations

import pytest

from disaggpilot.agent.baselines import BASELINES, BaselineError, make_baseline
from disaggpilot.agent.policy import Policy
from disaggpilot.env.errors import ConfigError
from tests.agent.baselines.helpers import context, history, spec

NAMES = ["static", "static_tuned", "static_oracle", "threshold", "sla_planner", "dynamo_planner", "saturation",
         "headroom_planner", "dynamic_oracle"]


def test_registry_holds_every_baseline_and_each_is_a_policy() -> None:
    assert sorted(BASELINES) == sorted(NAMES)
    for name in NAMES:
        policy = make_baseline(name)
        assert isinstance(policy, Policy) and policy.name == name


def test_unknown_kind_and_unknown_setting_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"agent.kind='magic'.*static"):
        make_baseline("magic")
    with pytest.raises(ConfigError, match=r"agent.threshold: unknown setting\(s\) \['target'\].*tolerance"):
        make_baseline("threshold", target=3)


@pytest.mark.parametrize(("kind", "params", "key"), [
    ("static", {"decode_replicas": -1}, "agent.static.decode_replicas"),
    ("threshold", {"decode_kv_usage": 1.5}, "agent.threshold.decode_kv_usage"),
    ("threshold", {"max_scale_up_factor": 1.0}, "agent.threshold.max_scale_up_factor"),
    ("saturation", {"kv_spare_trigger": 0.9}, "agent.saturation.kv_spare_trigger"),
    ("headroom_planner", {"prefill_utilization": 0.0}, "agent.headroom_planner.prefill_utilization"),
    ("headroom_planner", {"demand_window_intervals": 0}, "agent.headroom_planner.demand_window_intervals"),
    ("sla_planner", {"predictor": "arima"}, "agent.sla_planner.predictor"),
    ("sla_planner", {"predictor": "holt", "holt_alpha": 0.0}, "holt_alpha"),
    ("dynamic_oracle", {"max_simulations": -1}, "agent.dynamic_oracle.max_simulations"),
    ("static_oracle", {"search_duration_s": 0}, "agent.static_oracle.search_duration_s"),
])
def test_settings_are_validated_at_construction(kind: str, params: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make_baseline(kind, **params)


@pytest.mark.parametrize("name", ["static", "threshold", "sla_planner", "saturation", "headroom_planner",
                                  "static_oracle", "dynamic_oracle"])
def test_act_before_reset_says_what_to_do(name: str) -> None:
    with pytest.raises(BaselineError, match="reset"):
        make_baseline(name).act(None, history([spec()]))  # type: ignore[arg-type]


def test_adjustment_interval_must_be_a_multiple_of_the_control_interval() -> None:
    with pytest.raises(ConfigError, match=r"adjustment_interval_s=100.0.*multiple of env.interval_s=30"):
        make_baseline("sla_planner", adjustment_interval_s=100.0).reset(context())
