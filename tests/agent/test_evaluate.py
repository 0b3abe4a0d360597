"""``disaggpilot evaluate`` end to end, in a subprocess, with a tiny budget (as a user runs it)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.agent.evaluation.conftest import tiny_scenario, write_scenario

ROOT = Path(__file__).resolve().parents[2]


def evaluate(*overrides: str) -> subprocess.CompletedProcess[str]:
    """Run ``disaggpilot evaluate`` through ``controller.cli``."""
    command = [sys.executable, "-c", "from controller.cli import main; main()", "evaluate", *overrides]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_evaluate_writes_results_summary_timelines_and_plots(tmp_path: Path) -> None:
    scenario = write_scenario(tiny_scenario(), tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    result = evaluate(f"scenarios=[{scenario}]", "duration_s=300", "seeds=[0]", "jobs=2",
                      "+policy@policies.static_large=static", "policies.static_large.decode_replicas=3",
                      "only=[static,static_large]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout + result.stderr
    with (run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["policy"], r["scenario"], r["seed"]) for r in rows] == [("static", "small", "0"),
                                                                       ("static_large", "small", "0")]
    assert all(float(r["cost_usd"]) > 0 and 0 <= float(r["min_attainment"]) <= 1 for r in rows)
    assert sorted(p.name for p in (run_dir / "timeline").iterdir()) == ["static__small__0.csv",
                                                                         "static_large__small__0.csv"]
    summary = (run_dir / "summary.md").read_text()
    assert "## small (1 seed)" in summary and "| static_large " in summary
    assert summary.index("## Verdict") < summary.index("## small") and "DESIGN" not in summary
    plots = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert plots == ["cost_vs_attainment.png", "latency__small.png", "replicas__small.png"]
    assert all((run_dir / "plots" / name).stat().st_size > 10_000 for name in plots)
    assert "## Verdict" in result.stdout and f"plots: {run_dir / 'plots'}" in result.stdout
    assert "| policy " in result.stdout and "goodput tok/$" in result.stdout
    # the resolved config and the per-episode lines go to the run's log, not the terminal
    log = (run_dir / "evaluate.log").read_text()
    assert "resolved config" in log and "[2/2]" in log
    assert "resolved config" not in result.stdout + result.stderr and "[2/2]" not in result.stdout


def test_an_unknown_policy_kind_or_scenario_stops_with_a_message_naming_it(tmp_path: Path) -> None:
    result = evaluate("scenarios=[atlantis]", "only=[static]", f"hydra.run.dir={tmp_path}")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "disaggpilot evaluate: scenario='atlantis': no file" in output
    result = evaluate("policies.static.kind=magic", "only=[static]", f"hydra.run.dir={tmp_path}")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "disaggpilot evaluate: policies.static.kind='magic' is unknown" in output
