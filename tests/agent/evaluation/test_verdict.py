"""The verdict: holders first by tokens/$, missers after with their worst miss, ratios to the references (n/a
when a reference is absent), policies that see the future marked."""

from __future__ import annotations

import math
from typing import Any

import pytest

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.evaluation.report import summary_markdown, verdict_markdown
from disaggpilot.agent.evaluation.verdict import Miss, VerdictSettings, scenario_verdicts, worst_miss
from disaggpilot.agent.policy import sees_future
from disaggpilot.env.errors import ConfigError

SETTINGS = VerdictSettings(reference="fixed", upper="oracle")


def row(policy: str, seed: int, tokens: float, cost: float, code: float, chat: float = 0.99,
        scenario: str = "steady", future: bool = False) -> dict[str, Any]:
    """A results row with two tenants: code (target 0.90) and chat (target 0.95)."""
    return {"policy": policy, "kind": policy, "sees_future": future, "scenario": scenario, "seed": seed,
            "goodput_tokens_per_usd": tokens, "usd_per_million_goodput_tokens": 1e6 / tokens, "cost_usd": cost,
            "min_attainment": min(code, chat), "meets_slo": code >= 0.90 and chat >= 0.95,
            "attainment/code": code, "target/code": 0.90, "attainment/chat": chat, "target/chat": 0.95,
            "scale_actions": 2}


def episodes() -> list[dict[str, Any]]:
    return [
        row("cheap_misser", 0, 900.0, 5.0, code=0.91), row("cheap_misser", 1, 950.0, 5.0, code=0.80),
        row("fixed", 0, 500.0, 10.0, code=0.95), row("fixed", 1, 500.0, 10.0, code=0.93),
        row("planner", 0, 600.0, 8.0, code=0.92), row("planner", 1, 600.0, 8.0, code=0.91),
        row("oracle", 0, 750.0, 6.0, code=0.90, future=True), row("oracle", 1, 750.0, 6.0, code=0.90, future=True),
        row("near_misser", 0, 400.0, 12.0, code=0.95, chat=0.94), row("near_misser", 1, 400.0, 12.0, code=0.95),
    ]


def test_holders_come_first_by_tokens_per_dollar_then_missers_by_shortfall() -> None:
    verdicts = scenario_verdicts(episodes(), SETTINGS)
    assert [v.aggregate.policy for v in verdicts] == ["oracle", "planner", "fixed", "near_misser", "cheap_misser"]
    assert [v.holds for v in verdicts] == [True, True, True, False, False]
    assert verdicts[3].miss == Miss("chat", 0.94, 0.95, 0)
    assert verdicts[4].miss == Miss("code", 0.80, 0.90, 1)
    assert verdicts[4].missed_episodes == 1  # seed 0's 0.91 holds code's 0.90


def test_ratios_divide_by_the_reference_and_the_upper_policy() -> None:
    planner = next(v for v in scenario_verdicts(episodes(), SETTINGS) if v.aggregate.policy == "planner")
    assert planner.tokens_vs_reference == pytest.approx(600 / 500)
    assert planner.cost_vs_reference == pytest.approx(8 / 10)
    assert planner.tokens_vs_upper == pytest.approx(600 / 750)
    text = verdict_markdown(episodes(), SETTINGS)
    assert "tok/$ vs fixed" in text and "cost vs fixed" in text and "tok/$ vs oracle" in text
    assert "| planner " in text and " 1.20× " in text and " 0.80× " in text


def test_without_the_references_the_ratio_columns_say_n_a_and_nothing_crashes() -> None:
    rows = [r for r in episodes() if r["policy"] not in ("fixed", "oracle")]
    verdicts = scenario_verdicts(rows, SETTINGS)
    assert all(math.isnan(v.tokens_vs_reference) and math.isnan(v.tokens_vs_upper) for v in verdicts)
    text = verdict_markdown(rows, SETTINGS)
    assert "n/a" in text and "fixed did not run here" in text and "oracle did not run here" in text
    assert "600 tok/$ ✓" in text  # the overview falls back to tokens/$
    unset = verdict_markdown(rows, VerdictSettings(reference=None, upper=None))
    assert "vs " not in unset and "n/a" not in unset


def test_missers_are_listed_below_the_holders_with_their_failing_tenant() -> None:
    text = verdict_markdown(episodes(), SETTINGS)
    holders, missers = text.split("Missed a target:")
    assert "| planner " in holders and "cheap_misser" not in holders.split("## steady")[1]
    assert missers.index("near_misser") < missers.index("cheap_misser")
    assert "| code 0.800/0.90 " in missers and " 1 of 2 |" in missers
    assert "✗ code 0.800/0.90" in text and "1.20× ✓" in text  # the overview


def test_policies_that_see_the_future_are_marked_with_a_footnote() -> None:
    text = verdict_markdown(episodes(), SETTINGS)
    assert "| oracle* " in text and "| planner " in text and "| planner* " not in text
    assert "Marked *: sees the future" in text
    plain = verdict_markdown([r for r in episodes() if r["policy"] != "oracle"], SETTINGS)
    assert "sees the future" not in plain


def test_the_overview_has_a_column_per_scenario() -> None:
    rows = [*episodes(), row("planner", 0, 300.0, 9.0, code=0.5, scenario="burst"),
            row("fixed", 0, 200.0, 9.0, code=0.95, scenario="burst")]
    overview = verdict_markdown(rows, SETTINGS).split("## steady")[0]
    header = next(line for line in overview.splitlines() if line.startswith("| policy"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["policy", "steady", "burst"]
    planner = next(line for line in overview.splitlines() if line.startswith("| planner "))
    assert "1.20× ✓" in planner and "✗ code 0.500/0.90" in planner
    assert "–" in next(line for line in overview.splitlines() if line.startswith("| oracle*"))


def test_the_oracle_baselines_say_they_see_the_future_and_the_others_do_not() -> None:
    assert sees_future(make_baseline("static_oracle")) and sees_future(make_baseline("dynamic_oracle"))
    assert not any(sees_future(make_baseline(kind)) for kind in ("static", "static_tuned", "threshold",
                                                                "headroom_planner", "dynamo_planner"))


def test_bad_verdict_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"verdict\.reference"):
        VerdictSettings(reference="")
    with pytest.raises(ConfigError, match=r"verdict\.upper"):
        VerdictSettings(upper=3)  # type: ignore[arg-type]


def test_worst_miss_ignores_tenants_without_judged_requests() -> None:
    quiet = row("p", 0, 100.0, 1.0, code=math.nan)
    assert worst_miss([quiet]) is None
    assert "Policy evaluation" in summary_markdown([])
