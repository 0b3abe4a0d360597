"""The evaluation notebooks run end to end with small parameters, and are committed without outputs.

Each notebook is executed with papermill on a kernel of *this* interpreter: the fixture writes a kernel spec
whose command is ``sys.executable -m ipykernel_launcher`` into a temporary directory put first on
``JUPYTER_PATH``, so a clean virtualenv in CI needs no ``ipykernel install`` and no user-level kernel can
shadow it. Every notebook writes ``results.json`` and its figures into a temporary ``output_dir``; the
tests check their content.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = {"compare_policies.ipynb", "what_if.ipynb", "policy_behaviour.ipynb", "training_run.ipynb"}
KERNEL = "disaggpilot-notebook-tests"
CELL_TIMEOUT_S = 300
"""Longest any one cell may run before the test fails (seconds): small parameters take a few seconds."""


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernel spec running this interpreter, found through ``JUPYTER_PATH`` for this module's tests."""
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "disaggpilot tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(spec_dir.parent.parent))
        patch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        yield KERNEL


def execute(name: str, kernel: str, output_dir: Path, **parameters: Any) -> dict[str, Any]:
    """Run ``notebooks/<name>`` with ``parameters`` (and ``output_dir``); its ``results.json``."""
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(NOTEBOOKS / name), str(output_dir / name),
                               parameters={**parameters, "output_dir": str(output_dir)}, kernel_name=kernel,
                               cwd=str(NOTEBOOKS), progress_bar=False, execution_timeout=CELL_TIMEOUT_S,
                               start_timeout=120)
    results: dict[str, Any] = json.loads((output_dir / "results.json").read_text())
    for figure in results["figures"]:
        assert (output_dir / figure).stat().st_size > 1000, f"{name}: figure {figure} is empty"
    return results


def by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Rows keyed by the values of ``keys`` (lists, such as tenant mixes, as tuples)."""
    def hashable(value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value
    return {tuple(hashable(row[key]) for key in keys): row for row in rows}


def test_the_four_notebooks_are_committed_without_outputs() -> None:
    assert {path.name for path in NOTEBOOKS.glob("*.ipynb")} == EXPECTED
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        with_outputs = [i for i, cell in enumerate(code) if cell.get("outputs")]
        counted = [i for i, cell in enumerate(code) if cell.get("execution_count") is not None]
        assert not with_outputs, f"{path.name}: code cells {with_outputs} have outputs: clear them before committing"
        assert not counted, f"{path.name}: code cells {counted} have execution counts: clear them before committing"
        tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters' (papermill)"
        assert "output_dir" in tagged[0].source, f"{path.name}: the parameters cell must set output_dir"


@pytest.mark.slow
def test_compare_policies_evaluates_the_shipped_bundle_against_baselines(kernel_name: str, tmp_path: Path) -> None:
    results = execute("compare_policies.ipynb", kernel_name, tmp_path, scenarios=["steady", "diurnal"],
                      baselines=["static", "threshold"], seeds=[0], duration_s=600.0, reference="static", jobs=1)
    assert results["failures"] == []
    summary = by(results["summary"], "scenario", "policy")
    assert set(summary) == {(s, p) for s in ("steady", "diurnal") for p in ("static", "threshold", "ppo")}
    for row in summary.values():
        assert row["tokens_per_usd"] > 0 and 0 <= row["min_attainment"] <= 1 and row["cost_usd"] > 0
    assert results["bundles"][0]["sha256"] and results["bundles"][0]["trained_steps"] > 0
    verdict = [row for row in results["verdict"] if row["scenario"] == "steady"]
    assert {row["policy"] for row in verdict} == {"static", "threshold", "ppo"}
    order = [(not row["holds"], -row["tokens_per_usd"] if row["holds"] else 0.0) for row in verdict]
    assert order == sorted(order)  # holders first, best tokens/$ first
    assert all((row["miss_tenant"] is None) == row["holds"] for row in verdict)
    tenants = by(results["tenants"], "scenario", "policy", "tenant")
    assert {("steady", "ppo", "code"), ("steady", "ppo", "conv"), ("diurnal", "static", "chat")} <= set(tenants)
    spend = by(results["spend"], "scenario", "reference")
    assert set(spend) == {(s, p) for s in ("steady", "diurnal") for p in ("static", "threshold")}
    for (scenario, reference), row in spend.items():
        mine, theirs = summary[(scenario, "ppo")], summary[(scenario, reference)]
        assert row["delta_usd"] == pytest.approx(mine["cost_usd"] - theirs["cost_usd"])
    assert sum(band["intervals"] for band in results["spend_by_load"]["steady"]) == 20
    assert {"cost_vs_min_attainment.png", "replicas__steady.png", "latency__diurnal.png",
            "spend__steady.png"} <= set(results["figures"])


@pytest.mark.slow
def test_what_if_sweeps_every_axis_and_compares_serving_modes(kernel_name: str, tmp_path: Path) -> None:
    results = execute("what_if.ipynb", kernel_name, tmp_path, scenarios=["steady"], baselines=["static"],
                      seeds=[0], duration_s=600.0, prices=[1.5, 6.0], gpu_types=["h200", "b200"],
                      cold_starts_s=[30.0], load_multipliers=[0.5], tenant_mixes=[[2.0, 0.5]],
                      serving_policies=["static", "threshold"], jobs=1)
    rows = by(results["sweep"], "axis", "value", "policy")
    for axis, values in (("usd_per_gpu_hour", [1.5, 6.0]), ("hardware", ["h200", "b200"]), ("cold_start_s", [30.0]),
                         ("load_multiplier", [0.5])):
        for value in values:
            for policy in ("static", "ppo"):
                assert math.isfinite(rows[(axis, value, policy)]["tokens_per_usd"]), (axis, value, policy)
    # static does not look at the price: its tokens per dollar scale exactly as 1 / price
    base = rows[("base", None, "static")]["tokens_per_usd"] * 3.0
    for price in (1.5, 6.0):
        assert rows[("usd_per_gpu_hour", price, "static")]["tokens_per_usd"] * price == pytest.approx(base)
    serving = by(results["serving"], "scenario", "policy")
    assert set(serving) == {("steady", "static"), ("steady", "threshold")}
    for row in serving.values():
        assert row["disaggregated_tokens_per_usd"] > 0 and row["aggregated_tokens_per_usd"] > 0
    assert [verdict["scenario"] for verdict in results["verdicts"]] == ["steady"]
    assert results["verdicts"][0]["worth_it"] in (True, False)


@pytest.mark.slow
def test_policy_behaviour_maps_actions_and_reward_terms(kernel_name: str, bundle_dir: Path, tmp_path: Path) -> None:
    # a tiny untrained delta-mode bundle: its surfaces are replica changes and knob levels (the shipped v4's are
    # utilisation levels, tested in tests/agent/test_analysis.py)
    results = execute("policy_behaviour.ipynb", kernel_name, tmp_path, bundle=str(bundle_dir),
                      scenario="diurnal", seed=0, duration_s=600.0, grid_size=4, compare_with="threshold")
    assert results["steps"] == 20
    # the info terms add up to the reward the environment paid, step by step
    assert results["max_reward_term_error"] < 1e-9
    assert set(results["reward_totals"]) == {"reward/econ", "reward/slo_penalty", "reward/switching_cost"}
    assert results["reward_totals"]["reward/slo_penalty"] <= 1e-12  # -λ·max(0, episode sum), up to rounding
    surface = results["surfaces"][0]
    assert len(surface["x_values"]) == 4 and len(surface["y_values"]) == 4
    changes = surface["actions"]["prefill_replica_change"]
    assert len(changes) == 4 and all(len(row) == 4 for row in changes)
    assert all(-2 <= value <= 2 for row in changes for value in row)
    assert set(surface["actions"]["decode_batch_cap_level"][0]) <= {32, 64, 128, 256, 512}


@pytest.fixture(scope="module")
def training_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `disaggpilot train` run with a tiny budget: four rollouts of 24 steps, validation every 48."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    tiny = ["run.total_timesteps=96", "run.n_envs=1", "run.vec_env=dummy", "agent.n_steps=24", "agent.batch_size=24",
            "agent.n_epochs=1", "run.eval_every_steps=48", "run.checkpoint_every_steps=0",
            "run.validation_horizon_s=120", "run.scenarios=[steady]", "run.validation_scenarios=[steady]",
            "run.progress_bar=false"]
    command = [sys.executable, "-c", "from controller.cli import main; main()", "train", *tiny,
               f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_training_run_plots_the_runs_learning_curves(kernel_name: str, training_run: Path, tmp_path: Path) -> None:
    results = execute("training_run.ipynb", kernel_name, tmp_path, run_dir=str(training_run))
    [run] = results["runs"]
    assert run["path"] == str(training_run)
    assert run["points"]["econ/tokens_per_dollar"] == 4
    assert run["final"]["econ/tokens_per_dollar"] > 0
    assert {"slo/code/attainment", "slo/conv/attainment", "reward/slo_penalty", "eval/ppo/tokens_per_dollar"} <= \
        set(run["final"])
    assert run["targets"] == {"code": 0.95, "conv": 0.95}  # steady's targets
    assert {"tokens_per_dollar.png", "attainment.png", "reward_terms.png"} <= set(results["figures"])
