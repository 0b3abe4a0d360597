"""The specialist bundles in ``policies/specialists/``: one per scenario, each verified, trained and validated on
its own scenario only, and listed with its hash in ``policies/README.md`` (issue 20)."""

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
    assert (ROOT / "configs" / "scenario" / f"{name}.yaml").is_file(), f"{name} is not a scenario name"
    bundle = load_bundle(SPECIALISTS / name)  # every file's hash and the bundle's
    run = yaml.safe_load((bundle.path / "config.yaml").read_text())["run"]
    assert run["scenarios"] == [name] and run["validation_scenarios"] == [name]
    assert not set(run["validation_seeds"]) & set(range(100, 105)), "validated on evaluation seeds"


@pytest.mark.parametrize("name", NAMES)
def test_the_policies_readme_names_each_specialist_and_its_hash(name: str) -> None:
    readme = (ROOT / "policies" / "README.md").read_text()
    assert f"specialists/{name}" in readme and content_hash(SPECIALISTS / name) in readme
