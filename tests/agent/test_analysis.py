"""``agent.analysis``: the notebooks' helpers, on real evaluations of a tiny scenario, the shipped bundle and real
TensorBoard event files."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from disaggpilot.agent.analysis import (
    SHIPPED_BUNDLE,
    AnalysisError,
    Column,
    WhatIf,
    aggregated,
    cost_gap,
    episode,
    markdown_table,
    policy_config,
    policy_set,
    price_of,
    resolve_path,
    serving_rows,
    serving_verdicts,
    shipped_bundle,
    spend_by_load,
    spend_rows,
    summary_rows,
    sweep,
    tenant_rows,
    verdict_rows,
)
from disaggpilot.agent.analysis.behaviour import REWARD_TERMS, action_surface, record_episode, reward_terms
from disaggpilot.agent.analysis.tensorboard import attainment_targets, find_runs, load_scalars, smooth
from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.evaluation import EpisodeResult, EvaluationPlan, build_policy, evaluate
from disaggpilot.agent.evaluation.verdict import VerdictSettings
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.env.errors import CatalogError, ConfigError
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.trace import repo_root
from tests.env.sim.conftest import small_scenario

DURATION_S = 300.0
"""Ten 30-second intervals: each episode takes well under a second."""
POLICIES: dict[str, dict[str, Any]] = {"static": {"kind": "static"},
                                       "static_large": {"kind": "static", "decode_replicas": 3}}


def tiny() -> ScenarioConfig:
    return small_scenario(duration_s=DURATION_S)


@pytest.fixture(scope="module")
def results() -> list[EpisodeResult]:
    """``static`` (2 + 2 replicas) and ``static_large`` (one decode replica more) on seeds 0 and 1."""
    return evaluate(EvaluationPlan(policies=POLICIES, scenarios=[tiny()], seeds=[0, 1]))


# ----- sources ---------------------------------------------------------------------------------------------
def test_paths_resolve_here_first_then_under_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    assert resolve_path("configs") == tmp_path / "configs"
    assert resolve_path(SHIPPED_BUNDLE) == repo_root() / SHIPPED_BUNDLE
    assert resolve_path(tmp_path / "x") == tmp_path / "x"
    assert load_bundle(shipped_bundle()).content_hash


def test_policy_set_reads_configs_and_adds_bundles() -> None:
    policies = policy_set(["static", "dynamic_oracle"], {"mine": SHIPPED_BUNDLE})
    assert list(policies) == ["static", "dynamic_oracle", "mine"]
    assert policies["dynamic_oracle"]["sees_future"] is True
    assert policies["mine"]["kind"] == "ppo" and Path(policies["mine"]["bundle"]) == shipped_bundle()
    with pytest.raises(AnalysisError, match=r"use one of .*'threshold'"):
        policy_config("thresold")
    with pytest.raises(AnalysisError, match="no directory"):
        policy_set([], {"ppo": "policies/no-such-bundle"})
    with pytest.raises(AnalysisError, match=r"bundles\.static"):
        policy_set(["static"], {"static": SHIPPED_BUNDLE})


# ----- tables ------------------------------------------------------------------------------------------------
def test_markdown_table_formats_numbers_flags_and_gaps() -> None:
    rows = [{"name": "a", "x": 1234.5, "ok": True}, {"name": "b", "x": math.nan, "ok": False}]
    table = markdown_table(rows, [Column("name", "name"), Column("x", "x", ",.0f"), Column("ok", "ok"),
                                  Column("missing", "m")])
    assert table.splitlines() == ["| name | x | ok | m |", "|---|---|---|---|", "| a | 1,234 | ✓ | n/a |",
                                  "| b | n/a | ✗ | n/a |"]


def test_summary_and_tenant_rows_average_over_seeds(results: list[EpisodeResult]) -> None:
    summary = {row["policy"]: row for row in summary_rows(results)}
    static = [r.row for r in results if r.policy == "static"]
    assert summary["static"]["seeds"] == 2
    assert summary["static"]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in static) / 2)
    assert summary["static_large"]["tokens_per_usd"] < summary["static"]["tokens_per_usd"]
    tenants = {(row["policy"], row["tenant"]): row for row in tenant_rows(results)}
    assert set(tenants) == {(p, t) for p in POLICIES for t in ("chat", "summarise")}
    chat = tenants[("static", "chat")]
    assert chat["attainment"] == pytest.approx(sum(r["attainment/chat"] for r in static) / 2)
    assert chat["target"] == static[0]["target/chat"]
    assert chat["meets_target"] == all(r["attainment/chat"] >= r["target/chat"] for r in static)


def test_verdict_rows_put_holders_first_with_ratios_to_the_reference(results: list[EpisodeResult]) -> None:
    rows = verdict_rows(results, VerdictSettings(reference="static", upper=None))
    assert sorted(row["policy"] for row in rows) == sorted(POLICIES)
    order = [(not row["holds"], -row["tokens_per_usd"] if row["holds"] else 0.0) for row in rows]
    assert order == sorted(order)  # holders first, best tokens/$ first
    by_policy = {row["policy"]: row for row in rows}
    assert by_policy["static"]["tokens_vs_reference"] == pytest.approx(1.0)
    large = by_policy["static_large"]
    assert large["cost_vs_reference"] == pytest.approx(1.25)  # 5 replicas billed instead of 4
    assert math.isnan(large["tokens_vs_upper"]) and large["sees_future"] is False
    assert (large["miss_tenant"] is None) == large["holds"]
    absent = verdict_rows(results, VerdictSettings(reference="nobody", upper="nobody"))
    assert all(math.isnan(row["tokens_vs_reference"]) for row in absent)


def test_a_missing_episode_names_the_ones_there_are(results: list[EpisodeResult]) -> None:
    assert episode(results, "static", "small", 1).seed == 1
    with pytest.raises(AnalysisError, match=r"\('static', 'small', 0\)"):
        episode(results, "static", "small", 7)


# ----- spend -------------------------------------------------------------------------------------------------
def test_spend_rows_say_where_one_policy_spends_more(results: list[EpisodeResult]) -> None:
    rows = spend_rows(results, "static_large", "static")
    assert [(row["scenario"], row["seed"]) for row in rows] == [("small", 0), ("small", 1)]
    for row in rows:
        assert row["delta_usd"] == pytest.approx(row["cost_usd"] - row["reference_cost_usd"]) and row["delta_usd"] > 0
        assert row["delta_pct"] == pytest.approx(25.0)  # 5 replicas billed instead of 4
        assert row["replica_delta/decode"] == 1.0 and row["replica_delta/prefill"] == 0.0
        assert (row["share_cheaper"], row["share_dearer"]) == (0.0, 1.0)
    gap = cost_gap(results, "static_large", "static", "small", 0)
    assert len(gap["time_min"]) == 10 and gap["cumulative_usd"][-1] == pytest.approx(rows[0]["delta_usd"])
    assert set(gap["replica_delta/decode"]) == {1.0}
    assert gap["load_rps"] == [pytest.approx(r["arrival_rps/chat"] + r["arrival_rps/summarise"])
                               for r in episode(results, "static", "small", 0).timeline]


def test_spend_by_load_splits_intervals_into_bands(results: list[EpisodeResult]) -> None:
    bands = spend_by_load(results, "static_large", "static", "small", 0, bins=3)
    assert [band["intervals"] for band in bands] == [3, 3, 4]
    assert all(a["load_max_rps"] <= b["load_min_rps"] for a, b in itertools.pairwise(bands))
    assert all(band["mean_delta_usd"] > 0 for band in bands)
    with pytest.raises(ConfigError, match="bins=0"):
        spend_by_load(results, "static_large", "static", "small", 0, bins=0)


# ----- what-if -----------------------------------------------------------------------------------------------
def test_what_if_changes_a_copy_and_names_it() -> None:
    base = tiny()
    change = WhatIf(usd_per_gpu_hour=4.5, hardware="b200", cold_start_s=10.0, load_multiplier=2.0,
                    tenant_mix={"summarise": 3.0})
    world = change.apply(base)
    assert world.name == "small[usd_per_gpu_hour=4.5,hardware=b200,cold_start_s=10,load_multiplier=2,"\
                         "tenant_mix=summarisex3]"
    assert (world.hardware, world.cluster.usd_per_gpu_hour, world.cluster.cold_start_s) == ("b200", 4.5, 10.0)
    assert [t.arrival.rate_rps for t in world.tenants] == [8.0, 6.0]
    assert [t.arrival.rate_rps for t in base.tenants] == [4.0, 1.0] and base.name == "small"
    assert [t.arrival.rate_rps for t in WhatIf(tenant_mix=[0.5]).apply(base).tenants] == [2.0, 1.0]
    assert WhatIf().apply(base).name == "small" and WhatIf().label == "base"
    assert price_of(base) == 3.0 and price_of(WhatIf(hardware="b200").apply(base)) == 5.5


def test_what_if_refuses_impossible_changes() -> None:
    with pytest.raises(ConfigError, match=r"what_if\.usd_per_gpu_hour=-1"):
        WhatIf(usd_per_gpu_hour=-1.0)
    with pytest.raises(ConfigError, match=r"what_if\.serving='colocated'"):
        WhatIf(serving="colocated")
    with pytest.raises(CatalogError):
        WhatIf(hardware="tpu-v9")
    with pytest.raises(ConfigError, match=r"name tenants of 'small': \['chat', 'summarise'\]"):
        WhatIf(tenant_mix={"agents": 2.0}).apply(tiny())
    with pytest.raises(ConfigError, match="at most 2 factors"):
        WhatIf(tenant_mix=[1.0, 1.0, 2.0]).apply(tiny())
    with pytest.raises(ConfigError, match="has no prefill/decode pools"):
        WhatIf(serving="disaggregated").apply(small_scenario(prefill=0, decode=0, aggregated=4))


def test_aggregated_serving_keeps_the_gpus_and_knobs() -> None:
    cluster = tiny().cluster
    joint = aggregated(cluster)
    assert joint.enabled_roles() == ("aggregated",)
    assert joint.initial_gpus() == cluster.initial_gpus() == 16
    pool = joint.aggregated
    assert (pool.tp, pool.min_replicas, pool.max_replicas) == (4, 1, cluster.gpu_budget // 4)
    assert pool.max_num_batched_tokens == cluster.prefill.max_num_batched_tokens
    assert pool.max_num_seqs == cluster.decode.max_num_seqs
    assert cluster.enabled_roles() == ("prefill", "decode")  # the input is untouched
    assert aggregated(joint).enabled_roles() == ("aggregated",)


def test_sweep_labels_every_variant_and_keeps_failures_apart() -> None:
    result = sweep([tiny()], {"usd_per_gpu_hour": [1.5, 6.0], "serving": ["aggregated"]},
                   {"static": {"kind": "static"}, "sla_planner": {"kind": "sla_planner"}})
    rows = {(row["axis"], row["value"], row["policy"]): row for row in result.rows()}
    base = rows[("base", None, "static")]
    for price in (1.5, 6.0):  # the same cluster at another price: tokens per dollar scale as 1 / price
        assert rows[("usd_per_gpu_hour", price, "static")]["tokens_per_usd"] * price == \
            pytest.approx(base["tokens_per_usd"] * 3.0)
        assert rows[("usd_per_gpu_hour", price, "static")]["base_scenario"] == "small"
    [failure] = result.failures()
    assert failure["policy"] == "sla_planner" and failure["scenario"] == "small[serving=aggregated]"
    assert "aggregated" in failure["error"]
    [serving] = [row for row in serving_rows(result) if row["policy"] == "static"]
    assert serving["tokens_per_usd_ratio"] == pytest.approx(
        base["tokens_per_usd"] / rows[("serving", "aggregated", "static")]["tokens_per_usd"])
    with pytest.raises(ConfigError, match="unknown"):
        sweep([tiny()], {"gpu": ["b200"]}, {"static": {"kind": "static"}})


def _side(policy: str, tokens: tuple[float, float], meets: tuple[bool, bool], attained: tuple[float, float]) -> dict:
    return {"scenario": "w", "policy": policy,
            "disaggregated_tokens_per_usd": tokens[0], "aggregated_tokens_per_usd": tokens[1],
            "disaggregated_meets_slo": meets[0], "aggregated_meets_slo": meets[1],
            "disaggregated_min_attainment": attained[0], "aggregated_min_attainment": attained[1],
            "disaggregated_cost_usd": 1.0, "aggregated_cost_usd": 1.0}


@pytest.mark.parametrize(("rows", "worth_it", "reason"), [
    ([_side("a", (100, 200), (False, True), (0.8, 0.99))], False, "only aggregated"),
    ([_side("a", (100, 50), (True, True), (0.99, 0.99)), _side("b", (300, 10), (False, True), (0.5, 0.99))],
     True, r"earns \+100% tokens"),
    ([_side("a", (100, 200), (False, False), (0.9, 0.7))], True, r"neither .* \+0.200"),
])
def test_serving_verdicts_compare_the_best_policy_of_each_mode(rows: list[dict], worth_it: bool, reason: str) -> None:
    [verdict] = serving_verdicts(rows)
    assert verdict["worth_it"] is worth_it
    assert re.search(reason, verdict["reason"]), verdict["reason"]


# ----- behaviour ---------------------------------------------------------------------------------------------
def test_a_recorded_episode_keeps_observations_changes_and_reward_terms() -> None:
    log = record_episode(build_policy("static_large", POLICIES["static_large"]), tiny(), seed=0)
    assert len(log.steps) == 10 and log.roles == ["prefill", "decode"]
    assert log.changes("decode") == [1] + [0] * 9 and set(log.targets("decode")) == {3}
    assert log.minutes()[:2] == [0.0, 0.5]
    assert log.feature("pool/decode/ready")[0] == pytest.approx(2 / 32)  # 2 ready of max_replicas 32
    terms = reward_terms(log)
    assert set(terms) == {*REWARD_TERMS, "total"}
    assert terms["total"] == pytest.approx(log.rewards())
    assert all(0 <= value <= 1 for value in log.info("slo/chat/attainment"))


def test_the_action_surface_of_a_delta_bundle_covers_the_grid(bundle_dir: Path) -> None:
    policy = build_policy("ppo", policy_set([], {"ppo": bundle_dir})["ppo"])
    assert isinstance(policy, PpoPolicy)
    log = record_episode(policy, tiny(), seed=0)
    step = log.steps[5]
    surface = action_surface(policy, step, "tenant0/arrival_rate", [0.0, 0.5, 1.0],
                             "pool/prefill/waiting_per_replica", [0.0, 2.0])
    assert set(surface.actions) == {"prefill_replica_change", "decode_replica_change", "prefill_token_budget_level",
                                    "decode_batch_cap_level"}
    for grid in surface.actions.values():
        assert len(grid) == 2 and all(len(row) == 3 for row in grid)
    assert {v for row in surface.actions["prefill_replica_change"] for v in row} <= {-2, -1, 0, 1, 2}
    assert {v for row in surface.actions["decode_batch_cap_level"] for v in row} <= {32, 64, 128, 256, 512}
    # the grid point equal to the held step reproduces the action the policy took there
    held = action_surface(policy, step, "tenant0/arrival_rate", [step.observation["tenant0/arrival_rate"]],
                          "pool/prefill/waiting_per_replica", [step.observation["pool/prefill/waiting_per_replica"]])
    assert held.actions["prefill_replica_change"] == [[float(step.change["prefill"])]] or step.info["action/clipped"]
    with pytest.raises(ConfigError, match="x_feature='load'"):
        action_surface(policy, step, "load", [0.0], "pool/prefill/waiting_per_replica", [0.0])


def test_the_action_surface_of_the_shipped_headroom_bundle_is_its_utilisation_levels() -> None:
    bundle = shipped_bundle()
    policy = build_policy("headroom", policy_set([], {"headroom": str(bundle)})["headroom"])
    assert isinstance(policy, PpoPolicy) and policy.sizer is not None
    step = record_episode(policy, tiny(), seed=0).steps[5]
    surface = action_surface(policy, step, "tenant0/arrival_rate", [0.0, 1.0], "pool/prefill/waiting_per_replica",
                             [0.0, 2.0])
    levels = policy.sizer.settings
    assert set(surface.actions) == {"prefill_utilization_level", "decode_utilization_level"}
    chosen = {name: {v for row in grid for v in row} for name, grid in surface.actions.items()}
    assert chosen["prefill_utilization_level"] <= set(levels.prefill_utilization_levels)
    assert chosen["decode_utilization_level"] <= set(levels.decode_utilization_levels)


# ----- TensorBoard -------------------------------------------------------------------------------------------
def write_run(run: Path, first: dict[int, float], resumed: dict[int, float]) -> None:
    """A run with two event folders (a run and its resumption) and the Hydra config of `disaggpilot train`."""
    from torch.utils.tensorboard import SummaryWriter

    for folder, points in (("ppo_1", first), ("ppo_2", resumed)):
        writer = SummaryWriter(str(run / "tensorboard" / folder))
        for step, value in points.items():
            writer.add_scalar("econ/tokens_per_dollar", value, step)
        writer.close()
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"run": {"scenarios": ["steady", "diurnal"]}}))


def test_tensorboard_scalars_of_every_run_merged_by_step(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep" / "0", {10: 1.0, 20: 2.0}, {20: 2.5, 30: 3.0})
    write_run(tmp_path / "sweep" / "1", {10: 5.0}, {})
    assert find_runs(tmp_path / "sweep") == [tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"]
    series = load_scalars(tmp_path / "sweep" / "0")["econ/tokens_per_dollar"]
    assert (series.steps, series.values, series.last) == ([10, 20, 30], [1.0, 2.5, 3.0], 3.0)
    assert attainment_targets(tmp_path / "sweep" / "0") == {"code": 0.95, "conv": 0.95, "chat": 0.95}
    with pytest.raises(AnalysisError, match="no TensorBoard event files"):
        find_runs(tmp_path / "sweep" / "0" / ".hydra")
    with pytest.raises(AnalysisError, match="no directory"):
        find_runs(tmp_path / "nothing")


def test_smoothing_matches_tensorboards_debiased_average() -> None:
    assert smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert smooth([0.0, 10.0], 0.5) == pytest.approx([0.0, 5.0 / 0.75])
    assert smooth([3.0, 4.0], 0.0) == [3.0, 4.0]
    with pytest.raises(ConfigError, match="weight=1"):
        smooth([1.0], 1.0)
