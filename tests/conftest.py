"""Fixtures every test package shares: tiny policy bundles, built once per session (~2 s each).

They are read-only: a test that tampers with a bundle copies it first (``shutil.copytree``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from disaggpilot.agent.config_store import register_configs
from disaggpilot.controller.config import register_configs as register_controller_configs
from disaggpilot.localcluster.config_store import register_configs as register_loadgen_configs
from tests.bundles import COLD_START_OBSERVATION, build_bundle


@pytest.fixture(autouse=True, scope="session")
def config_schemas() -> None:
    """Every app's Hydra schemas, for the tests that compose configs in-process (the apps register their own)."""
    register_configs()
    register_controller_configs()
    register_loadgen_configs()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained ``delta``-mode policy bundle (replica changes and knob levels)."""
    return build_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def headroom_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained ``headroom``-mode policy bundle (utilisation levels, the defaults)."""
    return build_bundle(tmp_path_factory.mktemp("headroom_bundle"), headroom=True)


@pytest.fixture(scope="session")
def cold_start_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle trained with the opt-in ``cluster/cold_start`` feature, which the default config lacks."""
    return build_bundle(tmp_path_factory.mktemp("cold_start_bundle"), observation=COLD_START_OBSERVATION)
