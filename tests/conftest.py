"""Fixtures every test package shares: tiny policy bundles, built once per session (~2 s each).

They are read-only: a test that tampers with a bundle copies it first (``shutil.copytree``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from disaggpilot.agent.config_store import register_configs
from disaggpilot.controller.config import register_configs as register_controller_configs
from disaggpilot.localcluster.config_store import register_configs as register_loadgen_configs
from tests.bundles import COLD_START_OBSERVATION, build_bundle

ROOT = Path(__file__).resolve().parents[1]
WHOLE_MACHINE = (
    "tests/localcluster/", "tests/env/live/",  # real vLLM, the emulated rig, Prometheus: wall-clock deadlines
    "tests/controller/test_app.py", "tests/controller/test_telemetry.py", "tests/controller/test_leader.py",
    "tests/agent/test_ray_", "tests/agent/test_sweeps.py",  # local Ray clusters sized to both cores
)
"""Tests that start servers or processes against wall-clock deadlines, or size themselves to every core.
``make test`` runs them after the others, one at a time with the machine to themselves (``-m whole_machine``),
and the others two at a time (pytest-xdist); plain ``pytest`` runs everything one at a time."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the :data:`WHOLE_MACHINE` tests ``whole_machine``."""
    for item in items:
        if item.path.relative_to(ROOT).as_posix().startswith(WHOLE_MACHINE):
            item.add_marker(pytest.mark.whole_machine)


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
