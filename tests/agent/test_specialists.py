"""The specialist bundles in ``policies/specialists/``: each verified, trained and validated on one scenario
only, named after it (``<scenario>`` or ``<scenario>_<variant>``, e.g. ``flash_crowd_scheduled``), and listed
with its hash in ``policies/README.md`` (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from disaggpilot.agent.bundle import content_hash, load_bundle

ROOT = Path(__file__).resolve().parents[2]
SPECIALISTS = ROOT / "policies" / "specialists"
NAMES = sorted(p.name for p in SPECIALISTS.iterdir() if p.is_dir()) if SPECIALISTS.is_dir() else []


def test_there_are_specialists() -> None:
    assert NAMES, "policies/specialists/ holds no bundle"


@pytest.mark.parametrize("name", NAMES)
def test_a_specialist_is_named_after_the_one_scenario_it_learned_and_was_validated_on(name: str) -> None:
    bundle = load_bundle(SPECIALISTS / name)  # every file's hash and the bundle's
    run = yaml.safe_load((bundle.path / "config.yaml").read_text())["run"]
    scenario = run["scenarios"][0]
    assert (ROOT / "configs" / "scenario" / f"{scenario}.yaml").is_file(), f"{scenario} is not a scenario name"
    assert name == scenario or name.startswith(f"{scenario}_"), f"{name} is not named after {scenario}"
    assert run["scenarios"] == [scenario] and run["validation_scenarios"] == [scenario]
    assert not set(run["validation_seeds"]) & set(range(100, 105)), "validated on evaluation seeds"


@pytest.mark.parametrize("name", NAMES)
def test_the_policies_readme_names_each_specialist_and_its_hash(name: str) -> None:
    readme = (ROOT / "policies" / "README.md").read_text()
    assert f"specialists/{name}" in readme and content_hash(SPECIALISTS / name) in readme
