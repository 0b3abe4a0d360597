"""The evaluation harness on a tiny scenario: rows and columns, sane values, determinism across ``jobs``,
the policy hooks (``prepare``, ``sees_future``), failures that do not lose other episodes, and outputs."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disaggpilot.agent.evaluation import EpisodeResult, EvaluationPlan, evaluate, write_outputs
from disaggpilot.agent.evaluation import policies as policy_registry
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.catalog import load_gpu
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.workload import RequestBatch
from tests.agent.evaluation.conftest import DURATION_S, WALL_COLUMNS, make_plan, same_value


@pytest.fixture(scope="module")
def results() -> list[EpisodeResult]:
    """Two static policies × two seeds, in-process."""
    return evaluate(make_plan(jobs=1))


def test_one_row_per_policy_and_seed_in_task_order(results: list[EpisodeResult]) -> None:
    assert [r.error for r in results] == [None] * 4
    cells = [(r.row["policy"], r.row["scenario"], r.row["seed"]) for r in results]
    assert cells == [("static", "small", 0), ("static", "small", 1),
                     ("static_large", "small", 0), ("static_large", "small", 1)]


def test_rows_have_every_column_with_sane_values(results: list[EpisodeResult]) -> None:
    price = load_gpu("h100-sxm").usd_per_gpu_hour
    for result in results:
        row = result.row
        for tenant in ("chat", "summarise"):
            assert 0.9 <= row[f"attainment/{tenant}"] <= 1.0  # a lightly loaded cluster
            assert 0 < row[f"ttft_p90_s/{tenant}"] < 5 and 0 < row[f"tpot_p90_s/{tenant}"] < 0.2
        assert row["min_attainment"] == min(row["attainment/chat"], row["attainment/summarise"])
        assert row["cost_usd"] == pytest.approx(row["gpu_hours"] * price)
        assert row["goodput_tokens_per_usd"] == pytest.approx(row["goodput_tokens"] / row["cost_usd"])
        assert row["usd_per_million_goodput_tokens"] == pytest.approx(1e6 / row["goodput_tokens_per_usd"])
        assert row["intervals"] == 10 and row["duration_s"] == DURATION_S
        assert row["mean_replicas/prefill"] == 2.0 and math.isfinite(row["total_reward"]) and row["wall_s"] > 0
    static, large = results[0].row, results[2].row
    assert static["scale_actions"] == 0 and static["mean_replicas/decode"] == 2.0
    assert large["scale_actions"] == 1 and large["mean_replicas/decode"] == 3.0  # billed from the first interval
    assert large["cost_usd"] == pytest.approx(static["cost_usd"] * 5 / 4)
    assert large["goodput_tokens_per_usd"] < static["goodput_tokens_per_usd"]


def test_the_same_seed_gives_every_policy_the_same_requests(results: list[EpisodeResult]) -> None:
    def arrivals(result: EpisodeResult) -> list[float]:
        return [row["arrival_rps/chat"] for row in result.timeline]

    assert arrivals(results[0]) == arrivals(results[2])
    assert arrivals(results[0]) != arrivals(results[1])


def test_timelines_have_one_row_per_interval(results: list[EpisodeResult]) -> None:
    timeline = results[2].timeline
    assert [row["time_s"] for row in timeline] == [30.0 * i for i in range(1, 11)]
    assert timeline[0]["replicas_starting/decode"] == 1 and timeline[-1]["replicas_ready/decode"] == 3
    assert [row["scaled"] for row in timeline] == [1] + [0] * 9
    assert sum(row["cost_usd"] for row in timeline) == pytest.approx(results[2].row["cost_usd"])
    assert all(row["arrival_rps/chat"] > 0 for row in timeline)


def test_results_do_not_depend_on_jobs(results: list[EpisodeResult]) -> None:
    parallel = evaluate(make_plan(jobs=2))
    assert [r.error for r in parallel] == [None] * 4
    for one, two in zip(results, parallel, strict=True):
        assert one.row.keys() == two.row.keys()
        differing = [k for k in one.row if k not in WALL_COLUMNS and not same_value(one.row[k], two.row[k])]
        assert differing == [], (one.policy, one.seed)
        assert len(one.timeline) == len(two.timeline)
        assert all(all(same_value(a[k], b[k]) for k in a) for a, b in zip(one.timeline, two.timeline, strict=True))


def test_outputs_are_written(results: list[EpisodeResult], tmp_path: Path) -> None:
    plan = make_plan()
    outputs = write_outputs(results, plan.scenarios, tmp_path, plan.describe(), plots=False)
    with outputs.results_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {"attainment/chat", "min_attainment", "scale_actions"} <= rows[0].keys()
    assert float(rows[0]["cost_usd"]) == pytest.approx(results[0].row["cost_usd"])
    assert sorted(p.name for p in (tmp_path / "timeline").iterdir()) == [
        "static__small__0.csv", "static__small__1.csv", "static_large__small__0.csv", "static_large__small__1.csv"]
    summary = (tmp_path / "summary.md").read_text()
    section = summary.split("## small (2 seeds)")[1]
    assert section.index("| static ") < section.index("| static_large ") and "Missed a target" not in section
    assert summary.split("## small")[0].count(" ✓ |") == 2 and outputs.failures == []


# ----- the policy hooks, through a test kind registered like any other ---------------------------------------
class RecordingPolicy:
    """Holds the initial cluster; records its hook calls and what its context held."""

    name = "recording"
    calls: list[tuple[str, Any]] = []  # noqa: RUF012  (a class-level log shared by every instance)

    def __init__(self, fail_at_s: float | None = None) -> None:
        self.fail_at_s = fail_at_s

    def prepare(self, scenario: Any, seed: int, env_config: Any, reward_config: Any) -> None:
        self.calls.append(("prepare", (scenario.name, seed, env_config.interval_s, reward_config.slo_penalty)))

    def reset(self, context: PolicyContext) -> None:
        self.calls.append(("reset", context.requests))

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        if self.fail_at_s is not None and history[-1].end_s >= self.fail_at_s:
            raise RuntimeError("policy broke on purpose")
        return ClusterAction()


@pytest.fixture
def recording_kind(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    monkeypatch.setitem(policy_registry.POLICY_KINDS, "recording", lambda name, params: RecordingPolicy(**params))
    RecordingPolicy.calls = []
    return RecordingPolicy.calls


def test_prepare_runs_before_reset_and_only_a_sees_future_policy_sees_the_requests(
        recording_kind: list[tuple[str, Any]]) -> None:
    policies = {"blind": {"kind": "recording"}, "seer": {"kind": "recording", "sees_future": True}}
    outcome = evaluate(make_plan(policies=policies, seeds=[3]))
    assert [r.error for r in outcome] == [None, None]
    assert [call[0] for call in recording_kind] == ["prepare", "reset"] * 2
    assert recording_kind[0][1] == ("small", 3, 30.0, 10.0)
    assert recording_kind[1][1] is None
    seen = recording_kind[3][1]
    assert isinstance(seen, RequestBatch) and seen.tenant_names == ("chat", "summarise") and len(seen) > 1000


class SearchingPolicy(RecordingPolicy):
    """``static_oracle``'s protocol: ``search(scenario, seed, env_config)`` instead of ``prepare``."""

    prepare = None  # type: ignore[assignment]

    def search(self, scenario: Any, seed: int, env_config: Any) -> None:
        self.calls.append(("search", (scenario.name, seed, env_config.interval_s)))


def test_a_search_hook_runs_before_the_episode(monkeypatch: pytest.MonkeyPatch,
                                               recording_kind: list[tuple[str, Any]]) -> None:
    monkeypatch.setitem(policy_registry.POLICY_KINDS, "searching", lambda name, params: SearchingPolicy())
    plan = make_plan(policies={"static": {"kind": "static"}, "oracle": {"kind": "searching"}}, seeds=[2])
    assert plan.preparing == {"oracle"} and [t.prepares for t in plan.tasks()] == [False, True]
    outcome = evaluate(plan)
    assert [r.error for r in outcome] == [None, None]
    assert recording_kind == [("search", ("small", 2, 30.0)), ("reset", None)]
    assert outcome[1].row["prepare_wall_s"] > 0


def test_a_failing_episode_is_reported_and_the_others_survive(recording_kind: list[tuple[str, Any]],
                                                              tmp_path: Path) -> None:
    plan = make_plan(policies={"broken": {"kind": "recording", "fail_at_s": 90.0}, "static": {"kind": "static"}},
                     seeds=[0])
    outcome = evaluate(plan)
    assert outcome[0].error is not None and "policy broke on purpose" in outcome[0].error
    assert outcome[1].error is None and outcome[1].row["intervals"] == 10
    outputs = write_outputs(outcome, plan.scenarios, tmp_path, plots=False)
    assert [r.policy for r in outputs.failures] == ["broken"]
    assert "broken on small seed 0: RuntimeError: policy broke on purpose" in outputs.summary


def test_a_plan_validates_its_settings() -> None:
    with pytest.raises(ValueError, match=r"seeds=\[0, 0\]"):
        make_plan(seeds=[0, 0])
    with pytest.raises(ValueError, match=r"jobs=-1"):
        make_plan(jobs=-1)
    with pytest.raises(ValueError, match=r"start_method='teleport'"):
        make_plan(start_method="teleport")
    with pytest.raises(ValueError, match=r"policies=\{\}"):
        make_plan(policies={})
    assert isinstance(make_plan(), EvaluationPlan)
