"""Shared pieces of the evaluation tests: a tiny scenario (as a dataclass and as a YAML file) and plans."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from disaggpilot.agent.evaluation import EvaluationPlan
from disaggpilot.env.scenario import ScenarioConfig
from tests.env.sim.conftest import small_scenario

DURATION_S = 300.0
"""Episode length of the tests' scenario: 10 control intervals of 30 s (well under a second of wall time)."""
POLICIES: dict[str, dict[str, Any]] = {
    "static": {"kind": "static"},
    "static_large": {"kind": "static", "decode_replicas": 3},
}
"""Two cheap policies: the scenario's initial cluster, and one more decode replica from the first interval."""
WALL_COLUMNS = ("wall_s", "prepare_wall_s")
"""Columns that measure wall time and so differ between runs."""


def tiny_scenario() -> ScenarioConfig:
    """The simulator tests' two-tenant scenario (chat, summarise), 300 s long."""
    return small_scenario(duration_s=DURATION_S)


def write_scenario(scenario: ScenarioConfig, path: Path) -> Path:
    """Save ``scenario`` as a YAML file that ``env.scenario.load_scenario`` reads back."""
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(scenario)))
    return path


def make_plan(jobs: int = 1, **overrides: Any) -> EvaluationPlan:
    """Two static policies × two seeds on the tiny scenario."""
    settings: dict[str, Any] = {"policies": POLICIES, "scenarios": [tiny_scenario()], "seeds": [0, 1], "jobs": jobs}
    return EvaluationPlan(**{**settings, **overrides})


def same_value(a: Any, b: Any) -> bool:
    """Equality that treats two NaNs as equal."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    """The tiny scenario as a YAML file."""
    return write_scenario(tiny_scenario(), tmp_path / "tiny.yaml")
