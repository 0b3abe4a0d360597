"""The spec the controller expects of a bundle is the one an environment of the same settings stores."""

from __future__ import annotations

import pytest

from disaggpilot.agent.headroom import HeadroomEnv
from disaggpilot.agent.sizing.sizer import HeadroomSettings
from disaggpilot.controller.policies import expected_spec
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.observation import ObservationConfig
from disaggpilot.env.scenario import load_scenario

CONFIGS = [EnvConfig(), EnvConfig(interval_s=60.0, horizon_s=600.0),
           EnvConfig(observation=ObservationConfig(time_features=True, budget_features=True, cold_start_feature=True))]
HEADROOM = [None, HeadroomSettings(), HeadroomSettings(demand_window_choices=[2, 4], decode_floor_choices=[0, 1])]


@pytest.mark.parametrize("name", ["steady", "long_context", "noisy_neighbor"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("headroom", HEADROOM)
def test_expected_spec_is_the_environments(name: str, config: EnvConfig, headroom: HeadroomSettings | None) -> None:
    scenario = load_scenario(name)
    environment = DisaggClusterEnv(scenario, config=config)
    stored = HeadroomEnv(environment, headroom).spec_dict() if headroom else environment.spec_dict()
    assert expected_spec(scenario, config, stored) == stored


def test_expected_spec_builds_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller needs the contract only: building a simulator-backed environment for it is waste."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("expected_spec built a DisaggClusterEnv")

    monkeypatch.setattr(DisaggClusterEnv, "__init__", refuse)
    spec = expected_spec(load_scenario("steady"), EnvConfig())
    assert spec["interval_s"] == 30.0 and "action_mode" not in spec
    assert len(spec["action_nvec"]) == len(spec["action_dimensions"])
