"""``launcher=ray``: evaluation episodes as Ray tasks give the local run's results, in the library and through
``disaggpilot evaluate`` joining an existing local Ray by ``ray.address``."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from disaggpilot.agent.evaluation import evaluate, write_outputs
from disaggpilot.agent.evaluation.episode import EpisodeResult
from disaggpilot.agent.ray_cluster import RayConfig
from tests.agent.evaluation.conftest import WALL_COLUMNS, make_plan, same_value, write_scenario
from tests.agent.test_ray_vec_env import TIMEOUT_S, local_ray  # noqa: F401  (the module's Ray fixture)

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


def comparable(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows without the wall-time columns (the only ones that differ between runs)."""
    return [{key: value for key, value in row.items() if key not in WALL_COLUMNS} for row in rows]


def same_rows(ours: list[dict[str, object]], theirs: list[dict[str, object]]) -> bool:
    """Equal rows, NaN equal to NaN."""
    return len(ours) == len(theirs) and all(
        a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
        for a, b in zip(comparable(ours), comparable(theirs), strict=True))


@pytest.mark.slow
def test_episodes_as_ray_tasks_give_the_local_results(local_ray: str) -> None:  # noqa: F811
    plan = make_plan(jobs=1)
    seen: list[EpisodeResult] = []
    on_ray = evaluate(plan, progress=lambda result, done, total: seen.append(result),
                      ray=RayConfig(cpus_per_worker=0.5, timeout_s=TIMEOUT_S))
    local = evaluate(plan, progress=lambda result, done, total: None)
    assert [r.index for r in on_ray] == [0, 1, 2, 3] and sorted(r.index for r in seen) == [0, 1, 2, 3]
    assert all(r.error is None for r in on_ray)
    assert same_rows([r.row for r in on_ray], [r.row for r in local])
    assert all(same_rows(a.timeline, b.timeline) for a, b in zip(on_ray, local, strict=True))
    assert ray.is_initialized()  # the session joined the fixture's Ray and left it running


@pytest.mark.slow
def test_evaluate_command_with_launcher_ray_writes_the_local_results_csv(local_ray: str,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    plan = make_plan(jobs=1, seeds=[0])
    scenario = write_scenario(plan.scenarios[0], tmp_path / "tiny.yaml")
    command = [sys.executable, "-c", "from controller.cli import main; main()", "evaluate", "launcher=ray",
               f"ray.address={local_ray}", "ray.cpus_per_worker=0.5", f"ray.timeout_s={TIMEOUT_S}",
               f"scenarios=[{scenario}]", "duration_s=300", "seeds=[0]", "only=[static,static_large]",
               "+policy@policies.static_large=static", "policies.static_large.decode_replicas=3", "plots=false",
               f"hydra.run.dir={tmp_path / 'ray'}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "as Ray tasks" in (tmp_path / "ray" / "evaluate.log").read_text()
    local = write_outputs(evaluate(plan), plan.scenarios, tmp_path / "local", plots=False)
    with (tmp_path / "ray" / "results.csv").open() as ours, local.results_csv.open() as theirs:
        assert comparable(list(csv.DictReader(ours))) == comparable(list(csv.DictReader(theirs)))
