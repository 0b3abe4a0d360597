"""Controller settings: validation messages name the key, the value and the fix; Hydra composes them."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from disaggpilot.controller.app import settings_from_config
from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import (
    BackoffConfig,
    ControllerConfig,
    FallbackConfig,
    PoolBounds,
    ShieldConfig,
    register_configs,
)
from disaggpilot.controller.errors import ConfigError
from disaggpilot.env.catalog import configs_dir


@pytest.mark.parametrize(("build", "match"), [
    (lambda: ControllerConfig(mode="on"), r"controller\.mode='on' is invalid: use one of \('shadow', 'active'\)"),
    (lambda: ControllerConfig(interval_s=0), r"controller\.interval_s=0 is invalid"),
    (lambda: ControllerConfig(expected_hash="abc"), r"controller\.expected_hash='abc'.*64-hex-digit"),
    (lambda: ControllerConfig(metrics_port=70000), r"controller\.metrics_port=70000"),
    (lambda: ControllerConfig(interval_s=2, fallback=FallbackConfig(backoff=BackoffConfig(attempts=3))),
     r"controller\.fallback\.backoff=.*keep it under interval_s=2"),
    (lambda: ShieldConfig(pools={"prefill": PoolBounds(min_replicas=4, max_replicas=2)}),
     r"controller\.shield\.pools\.prefill\.max_replicas=2 is invalid: use at least min_replicas=4"),
    (lambda: ShieldConfig(up_cooldown_s=-1), r"controller\.shield\.up_cooldown_s=-1"),
    (lambda: ShieldConfig(down_hysteresis_intervals=0), r"controller\.shield\.down_hysteresis_intervals=0"),
    (lambda: ShieldConfig(tenant_floor_margin=1.5), r"controller\.shield\.tenant_floor_margin=1\.5"),
    (lambda: FallbackConfig(staleness_limit_s=0), r"controller\.fallback\.staleness_limit_s=0"),
    (lambda: FallbackConfig(max_actuator_failures=0), r"controller\.fallback\.max_actuator_failures=0"),
    (lambda: BackoffConfig(multiplier=0.5), r"controller\.fallback\.backoff\.multiplier=0\.5"),
])
def test_bad_settings_are_refused_with_the_key_and_the_fix(build: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


def test_the_backoff_schedule_is_data() -> None:
    assert BackoffConfig(initial_s=1.0, max_s=5.0, multiplier=3.0, attempts=4).delays() == [1.0, 3.0, 5.0]


def compose_controller(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return compose(config_name="controller", overrides=list(overrides))


def test_the_composed_config_builds_validated_settings() -> None:
    cfg = compose_controller("controller.mode=active", "controller.fallback_only=true", "controller.shield.max_step=1",
                             "clock=virtual", "controller.interval_s=60", "controller.fallback.backoff.attempts=2")
    settings = settings_from_config(cfg)
    assert settings.controller.mode == "active" and settings.controller.shield.max_step == 1
    assert settings.controller.shield.pools["decode"].max_replicas == 12
    assert settings.env.interval_s == 60.0  # one interval for the controller and the bundle check
    assert settings.scenario.name == "steady" and isinstance(settings.clock, VirtualClock)


def test_overrides_are_type_checked_and_unknown_keys_refused() -> None:
    with pytest.raises(ConfigCompositionException):
        compose_controller("controller.shield.max_step=abc")
    with pytest.raises(ConfigCompositionException):
        compose_controller("controller.no_such_key=1")
    with pytest.raises(ConfigError, match="backend='moon'"):
        settings_from_config(compose_controller("backend=moon"))
    with pytest.raises(ConfigError, match=r"env\.live=None is invalid: compose the live environment"):
        settings_from_config(compose_controller("backend=live"))
