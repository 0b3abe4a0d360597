"""One pointer to the shipped bundle: ``env.catalog.SHIPPED_BUNDLE``.

Python imports it. The files that cannot (the Makefile, the controller ConfigMap, the notebooks' parameter
cells, which a reader edits by hand) hold deliberate copies, and these tests keep each copy equal to it, so
shipping another bundle is one edit here and a failing test for every copy left behind.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from disaggpilot.env.catalog import SHIPPED_BUNDLE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DEFAULTS = {"compare_policies.ipynb": r'bundles = \{"ppo": "([^"]+)"\}',
                     "what_if.ipynb": r'bundles = \{"ppo": "([^"]+)"\}',
                     "policy_behaviour.ipynb": r'bundle = "([^"]+)"'}
"""Notebook -> the parameter-cell assignment whose path is the shipped bundle."""
COPIES = {"Makefile", "deploy/controller/configmap.yaml", "env/catalog.py",
          *(f"notebooks/{name}" for name in NOTEBOOK_DEFAULTS)}
"""Files outside the prose that may spell the shipped bundle's path: the constant and its checked copies."""
PROSE = (".md",)
"""Documentation names the path in prose; it is read, not run."""


def test_the_shipped_bundle_is_the_one_bundle_policies_carries() -> None:
    bundles = sorted(p.name for p in (ROOT / "policies").iterdir() if p.is_dir())
    assert bundles == sorted([Path(SHIPPED_BUNDLE).name, "specialists"]), (
        f"policies/ holds {bundles}: it carries the shipped bundle ({SHIPPED_BUNDLE}) and specialists/ only; build "
        "test bundles in a fixture (tests/bundles.py) and move experiment notes to docs/experiments/")
    assert (ROOT / SHIPPED_BUNDLE / "manifest.json").is_file()


def test_the_makefiles_shipped_bundle_is_the_constant() -> None:
    [value] = re.findall(r"^SHIPPED \?= (\S+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert value == SHIPPED_BUNDLE, f"Makefile: SHIPPED ?= {value}; set it to SHIPPED_BUNDLE ({SHIPPED_BUNDLE})"


def test_the_controller_configmap_runs_and_pins_the_shipped_bundle() -> None:
    manifest = yaml.safe_load((ROOT / "deploy/controller/configmap.yaml").read_text())
    site = yaml.safe_load(manifest["data"]["site.yaml"])
    assert site["bundle"] == f"/opt/disaggpilot/{SHIPPED_BUNDLE}", (
        f"deploy/controller/configmap.yaml: bundle={site['bundle']}; set it to /opt/disaggpilot/{SHIPPED_BUNDLE}")
    shipped = json.loads((ROOT / SHIPPED_BUNDLE / "manifest.json").read_text())
    assert site["expected_hash"] == shipped["bundle_sha256"], (
        "deploy/controller/configmap.yaml: expected_hash is not the shipped bundle's: set it to the output of "
        f"`python -m disaggpilot.agent.bundle {SHIPPED_BUNDLE}`")


@pytest.mark.parametrize("name", sorted(NOTEBOOK_DEFAULTS))
def test_the_notebooks_default_bundle_is_the_constant(name: str) -> None:
    notebook = json.loads((ROOT / "notebooks" / name).read_text())
    parameters = next(cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", []))
    [value] = re.findall(NOTEBOOK_DEFAULTS[name], "".join(parameters["source"]))
    assert value == SHIPPED_BUNDLE, f"notebooks/{name}: the default bundle is {value}; set it to {SHIPPED_BUNDLE}"


def test_no_other_file_spells_a_bundle_path() -> None:
    """Code, configs and manifests name no ``policies/disaggpilot-ppo-*`` path but through the constant."""
    files = subprocess.run(["git", "grep", "--untracked", "-l", "policies/disaggpilot-ppo-"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.split()
    assert files, "git grep found nothing: run from a git checkout"
    spelled = {f for f in files if not f.endswith(PROSE)} - COPIES - {Path(__file__).relative_to(ROOT).as_posix()}
    assert not spelled, f"{sorted(spelled)} spell a bundle path: import env.catalog.SHIPPED_BUNDLE, or, in a file " \
                        "that cannot import it, add the copy to COPIES with a test that it equals the constant"
