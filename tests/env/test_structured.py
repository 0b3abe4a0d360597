"""Settings built by OmegaConf (``env.structured.build``): typed, validated, and a refusal says how to fix it."""

from __future__ import annotations

import pytest
from omegaconf.errors import ValidationError

from disaggpilot.agent.training.config import RunConfig
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.live.config import LiveConfig, PrometheusSourceConfig
from disaggpilot.env.sim.config import ClusterConfig
from disaggpilot.env.structured import build


def test_nested_settings_are_built_typed() -> None:
    config = build(EnvConfig, {"interval_s": "60", "action": {"max_step": 3}})
    assert config.interval_s == 60.0 and config.action.max_step == 3  # OmegaConf converted the string
    live = build(LiveConfig, {"prometheus": {"url": "http://p:9090/"}, "time_scale": 0.5})
    assert isinstance(live.prometheus, PrometheusSourceConfig) and live.prometheus.url == "http://p:9090"


@pytest.mark.parametrize(("schema", "values", "key", "message"), [
    (EnvConfig, {"interval_s": "abc"}, "env", r"^env\.interval_s='abc' is invalid: use a number$"),
    (RunConfig, {"seed": 1.5}, "run", r"^run\.seed=1\.5 is invalid: use a non-negative integer"),
    (EnvConfig, {"randomization": {"load_multiplier": ["a", 1]}}, "env",
     r"^env\.randomization\.load_multiplier=\['a', 1\] is invalid: use a list of numbers"),
    (LiveConfig, {"prometheus": {"pools": {}}}, "live", r"^live\.prometheus\.url='\?\?\?' is invalid: set Prometheus"),
    (EnvConfig, {"intervl_s": 60}, "env", r"^env\.intervl_s is not a setting: .*'interval_s'"),
    (LiveConfig, {"prometheus": {"url": "http://p:9090", "colour": "red"}}, "live",
     r"^live\.prometheus\.colour is not a setting: .*'timeout_s'"),
])
def test_a_refused_value_is_explained_by_its_dataclass(schema: type, values: dict[str, object], key: str,
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(schema, values, key)


def test_omegaconf_explains_what_the_dataclass_would_accept() -> None:
    """PoolConfig checks its values only inside a cluster: OmegaConf's refusal stands, naming the key."""
    with pytest.raises(ValidationError, match=r"decode\.tp"):
        build(ClusterConfig, {"decode": {"tp": "eight"}})
