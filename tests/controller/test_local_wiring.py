"""``controller=local``: the daemon's settings and wiring of the local-process actuator (the rig's replicas).

The whole loop on emulated replicas is proven in ``tests/localcluster/test_rig_emulated.py``; here only what
needs no process: composition, validation and which actuator the live backend gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from disaggpilot.controller.app import build_backend, local_replicas, settings_from_config
from disaggpilot.controller.clock import WallClock
from disaggpilot.controller.config import ControllerConfig, register_configs
from disaggpilot.controller.errors import ConfigError
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.live.backend import LiveBackend
from disaggpilot.env.live.launcher import Launcher
from disaggpilot.env.live.local_actuator import LocalProcessActuator

LIVE = ["backend=live", "env=live", "env.live.prometheus.url=http://127.0.0.1:9", "controller.fallback_only=true"]


def compose_controller(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return compose(config_name="controller", overrides=list(overrides))


def test_controller_local_composes_an_active_controller_with_launcher_settings(tmp_path: Path) -> None:
    discovery = tmp_path / "discovery.json"
    cfg = compose_controller(*LIVE, "controller=local", f"controller.launcher.discovery_path={discovery}",
                             "controller.launcher.emulator.time_scale=0.25", "env.live.time_scale=0.25")
    settings = settings_from_config(cfg)
    config = settings.controller
    assert (config.mode, config.actuator) == ("active", "local")
    assert config.launcher is not None and config.launcher.kind == "emulator"
    assert config.launcher.discovery_path == str(discovery) and config.launcher.emulator.time_scale == 0.25


def test_a_sped_up_rig_is_controlled_in_the_scenarios_seconds(tmp_path: Path) -> None:
    local = [*LIVE, "controller=local", f"controller.launcher.discovery_path={tmp_path}/d.json",
             "controller.launcher.emulator.time_scale=0.25"]
    settings = settings_from_config(compose_controller(*local, "env.live.time_scale=0.25"))
    assert isinstance(settings.clock, WallClock) and settings.clock.speedup == 4.0  # 30 s intervals in 7.5 s
    assert settings.live is not None and settings.live.time_scale == 0.25
    assert settings.controller.launcher is not None
    backend = build_backend(settings, None, Launcher(settings.controller.launcher))
    assert isinstance(backend, LiveBackend) and backend.time_scale == 0.25
    with pytest.raises(ConfigError, match=r"env\.live\.time_scale=1\.0 is invalid.*time_scale=0\.25"):
        settings_from_config(compose_controller(*local))  # emulators 4x faster, read as real time
    with pytest.raises(ConfigError, match=r"clock_speedup=2.*env\.live\.time_scale"):
        settings_from_config(compose_controller(*LIVE, "controller.actuator=dry_run", "clock_speedup=2"))


def test_the_live_backend_acts_through_the_launcher(tmp_path: Path) -> None:
    cfg = compose_controller(*LIVE, "controller=local", f"controller.launcher.discovery_path={tmp_path}/d.json")
    settings = settings_from_config(cfg)
    assert settings.controller.launcher is not None
    launcher = Launcher(settings.controller.launcher)  # not started: no process
    backend = build_backend(settings, None, launcher)
    assert isinstance(backend, LiveBackend) and isinstance(backend.actuator, LocalProcessActuator)
    assert backend.actuator.launcher is launcher
    with pytest.raises(ConfigError, match="start the launcher first"):
        build_backend(settings, None, None)


def test_local_replicas_start_nothing_for_other_actuators() -> None:
    settings = settings_from_config(compose_controller(*LIVE, "controller.actuator=dry_run"))
    with local_replicas(settings) as launcher:
        assert launcher is None


def test_the_local_actuator_needs_launcher_settings_and_a_live_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"controller\.launcher="):
        ControllerConfig(actuator="local")
    local = [f"controller.launcher.discovery_path={tmp_path}/d.json", "controller=local",
             "controller.fallback_only=true"]
    with pytest.raises(ConfigError, match="backend=live"):
        settings_from_config(compose_controller(*local))
    with pytest.raises(ConfigError, match="kubernetes or local"):
        settings_from_config(compose_controller(*LIVE, "controller.actuator=backend"))
