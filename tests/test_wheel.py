"""The built wheel: one ``disaggpilot`` import namespace, configs/data/policies inside it, usable outside a checkout.

The folders ``env/``, ``agent/``, ``controller/`` and ``localcluster/`` sit at the repository root and install as
``disaggpilot.env`` and so on (``pyproject.toml``'s package-dir), so the package list there must name every code
folder, and the wheel must run ``disaggpilot simulate`` from a folder that is not the checkout.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from disaggpilot.env.catalog import SHIPPED_BUNDLE

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("env", "agent", "controller", "localcluster")
"""Root folders that install under the ``disaggpilot`` namespace."""
GENERIC_NAMES = (*CODE_FOLDERS, "configs", "data", "policies")
"""Top-level names the wheel must not claim in site-packages."""
NOT_SOURCE = (".*", "build", "*.egg-info", "__pycache__", "outputs", "multirun", "runs", "results*")
"""What the copy built from leaves out: git, virtual environments and caches, earlier builds and run outputs."""


def setuptools_config() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        tool: dict[str, object] = tomllib.load(handle)["tool"]["setuptools"]
    return tool


def test_the_package_list_names_every_code_folder() -> None:
    config = setuptools_config()
    folders = {path.parent.relative_to(ROOT) for name in CODE_FOLDERS for path in (ROOT / name).rglob("__init__.py")}
    wanted = {"disaggpilot." + ".".join(folder.parts) for folder in folders}
    listed = {name for name in config["packages"] if name.split(".")[1] in CODE_FOLDERS}  # type: ignore[attr-defined]
    assert listed == wanted, f"pyproject.toml [tool.setuptools] packages: add {wanted - listed}, drop {listed - wanted}"
    assert all(config["package-dir"][f"disaggpilot.{name}"] == name for name in CODE_FOLDERS)  # type: ignore[index]


def bare_imports(path: Path) -> list[str]:
    """The imports in ``path`` of a code folder by its folder name (``import env``) instead of its import name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if not node.level else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names
                      if name.split(".")[0] in CODE_FOLDERS]
    return found


def test_nothing_imports_a_code_folder_by_its_bare_name() -> None:
    # The checkout's root is on the import path under pytest, so `import env` would still work here, as a second
    # copy of the module (its classes unequal to disaggpilot.env's), and fail only where the wheel is installed.
    folders = (*CODE_FOLDERS, "tests", "benchmarks", "scripts", "hydra_plugins")
    found = [hit for folder in folders for path in sorted((ROOT / folder).rglob("*.py")) for hit in bare_imports(path)]
    assert found == [], "import these as disaggpilot.<name>: " + ", ".join(found)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of this checkout (no build isolation: nothing is downloaded).

    A copy, because setuptools builds in place: a stale ``build/`` in the checkout would ship deleted files.
    """
    source, out = tmp_path_factory.mktemp("source") / "disaggpilot", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True, timeout=600)
    (found,) = out.glob("disaggpilot-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel; its dependencies are this environment's, through a .pth."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    # A plain path line: this environment's own .pth files (the editable install's hook among them) are not run.
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return folder


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the checkout on the import path."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "DISAGGPILOT_CONFIGS")}


@pytest.mark.slow
def test_the_wheel_claims_only_the_disaggpilot_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert not tops & set(GENERIC_NAMES), f"the wheel installs generic top-level names: {sorted(tops)}"
    assert {"disaggpilot/env/catalog.py", "disaggpilot/controller/cli.py", "disaggpilot/configs/simulate.yaml",
            "disaggpilot/configs/model/hf/llama-3.1-70b/config.json", "disaggpilot/data/traces/azure2023_conv.csv",
            "disaggpilot/data/calibration/splitwise_perf_model.csv",
            f"disaggpilot/{SHIPPED_BUNDLE}/model.zip",
            "hydra_plugins/disaggpilot_ray_launcher/__init__.py"} <= set(names)


@pytest.mark.slow
def test_the_installed_wheel_simulates_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import disaggpilot.env.catalog as c; "
                            "print(c.__file__); print(c.configs_dir())"],
                           cwd=tmp_path, env=clean_env(), check=True, capture_output=True, text=True, timeout=120)
    module, configs = where.stdout.split()
    assert Path(module).is_relative_to(venv) and Path(configs).is_relative_to(venv), where.stdout
    result = subprocess.run([str(venv / "bin" / "disaggpilot"), "simulate", "duration_s=600"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attain" in result.stdout and "\nall " in result.stdout, result.stdout  # the per-tenant summary table
    assert list(tmp_path.glob("outputs/simulate/*/summary.json")), "no summary.json written under the cwd"
