"""The plots: one colour per policy in every figure, seeds aggregated into a median and a band, holders
filled in the cost scatter, legends outside the data."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from disaggpilot.agent.evaluation import EpisodeResult, evaluate
from disaggpilot.agent.evaluation import plots as plots_module
from disaggpilot.agent.evaluation.plots import PALETTE, band, plot_all, policy_colours
from tests.agent.evaluation.conftest import make_plan, tiny_scenario


@pytest.fixture(scope="module")
def results() -> list[EpisodeResult]:
    """Two static policies x two seeds on the tiny scenario."""
    return evaluate(make_plan())


def test_colours_follow_the_sorted_names_whatever_their_order() -> None:
    assert policy_colours(["threshold", "static", "static"]) == {"static": PALETTE[0], "threshold": PALETTE[1]}
    assert policy_colours(["b", "a", "c"]) == policy_colours(["c", "b", "a"])
    assert len(set(policy_colours(f"p{i}" for i in range(len(PALETTE))).values())) == len(PALETTE)


def legend_colours(figure: Figure) -> dict[str, str]:
    """Label → colour of the figure-level legend's policy entries."""
    legend = figure.legends[0]
    return {text.get_text(): to_hex(handle.get_color()) for text, handle in zip(legend.texts, legend.legend_handles,
                                                                               strict=True)
            if text.get_text().startswith("static")}


def test_every_figure_gives_a_policy_the_same_colour_and_keeps_its_legend_outside(
        results: list[EpisodeResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[str, Figure] = {}

    def keep(figure: Figure, path: Path) -> Path:
        drawn[path.name] = figure
        return path

    monkeypatch.setattr(plots_module, "_save", keep)
    plot_all(results, [tiny_scenario()], tmp_path)
    assert sorted(drawn) == ["cost_vs_attainment.png", "latency__small.png", "replicas__small.png"]
    expected = {"static": PALETTE[0], "static_large": PALETTE[1]}
    for name, figure in drawn.items():
        assert legend_colours(figure) == expected, name
        assert all(not axis.get_legend() or axis.get_legend().get_bbox_to_anchor().x0 > axis.bbox.x1
                   for axis in figure.axes), f"{name}: a legend inside the data"
    assert "median of 2 seeds" in drawn["replicas__small.png"].get_suptitle()


def test_the_band_is_the_median_and_range_over_seeds(results: list[EpisodeResult]) -> None:
    episodes = [r for r in results if r.policy == "static"]
    minutes, median, low, high = band(episodes, lambda t: [float(row["cost_usd"]) for row in t])
    assert len(minutes) == len(episodes[0].timeline) and minutes[0] == pytest.approx(0.5)
    assert all(lo <= mid <= hi for lo, mid, hi in zip(low, median, high, strict=True))


def test_the_cost_scatter_fills_the_points_that_held_every_target(results: list[EpisodeResult], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(plots_module, "_save", lambda figure, path: drawn.append(figure) or path)
    rows = [dict(r.row, meets_slo=(r.policy == "static")) for r in results]
    plots_module.plot_cost_vs_attainment(rows, tmp_path / "x.png")
    axis = drawn[0].axes[0]
    filled = [len(c.get_facecolors()) > 0 and c.get_facecolors()[0][3] > 0 for c in axis.collections]
    assert sorted(filled) == [False, False, True, True]
    assert any("target" in text.get_text() for text in axis.texts)
    labels = [text.get_text() for text in drawn[0].legends[0].texts]
    assert "small" not in labels and {"every tenant on target", "a tenant missed"} <= set(labels)
