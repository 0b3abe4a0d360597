"""Active mode runs only a pinned bundle: a tampered bundle whose manifest was recomputed is never unpickled.

The tampered bundle carries a benign pickle payload (``tests.bundles.TouchPayload``) that creates a marker file
when unpickled, so each test sees whether the controller ran anything from it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.controller.app import settings_from_config
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.controller.errors import ConfigError
from disaggpilot.controller.policies import load_policy
from disaggpilot.env.cluster_env import EnvConfig
from tests.bundles import plant_payload
from tests.controller.test_config import compose_controller
from tests.env.sim.conftest import small_scenario


@pytest.fixture
def tampered(bundle_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny bundle with a payload in its model and a recomputed manifest, and the payload's marker."""
    copy, marker = Path(shutil.copytree(bundle_dir, tmp_path / "tampered")), tmp_path / "payload-ran"
    plant_payload(copy, marker)
    return copy, marker


def test_active_mode_refuses_an_unpinned_bundle_and_says_how_to_pin_it(tampered: tuple[Path, Path]) -> None:
    bundle, marker = tampered
    with pytest.raises(ConfigError, match=r"controller\.expected_hash=None is invalid: active mode runs only a "
                                          r"pinned bundle.*python -m disaggpilot\.agent\.bundle.*"
                                          r"controller\.allow_unpinned=true"):
        ControllerConfig(mode="active", bundle=str(bundle))
    with pytest.raises(ConfigError, match=r"controller\.expected_hash=None"):
        settings_from_config(compose_controller("controller.mode=active", f"controller.bundle={bundle}",
                                                "clock=virtual"))
    assert not marker.exists()
    ControllerConfig(mode="active", fallback_only=True)  # no bundle: the fallback planner only, nothing to pin
    ControllerConfig(mode="shadow", bundle=str(bundle))  # shadow mode may run unpinned (with a warning)


def test_a_pin_on_the_original_keeps_the_tampered_bundle_from_being_unpickled(bundle_dir: Path,
                                                                              tampered: tuple[Path, Path]) -> None:
    bundle, marker = tampered
    settings = ControllerConfig(mode="active", bundle=str(bundle), expected_hash=load_bundle(bundle_dir).content_hash)
    policy, problem = load_policy(settings, small_scenario(), EnvConfig())
    assert policy is None and problem is not None and problem.reason == "bundle_mismatch"
    assert "differs from the expected" in problem.detail
    assert not marker.exists()


def test_allow_unpinned_loads_the_tampered_bundle_and_its_payload_runs(tampered: tuple[Path, Path],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    bundle, marker = tampered
    settings = ControllerConfig(mode="active", bundle=str(bundle), allow_unpinned=True)
    with caplog.at_level(logging.WARNING, logger="disaggpilot.controller"):
        policy, problem = load_policy(settings, small_scenario(), EnvConfig())
    assert isinstance(policy, PpoPolicy) and problem is None
    assert marker.exists()  # what allow_unpinned means; and proof the tests above would have seen the payload run
    assert any("is not pinned" in record.getMessage() for record in caplog.records)
