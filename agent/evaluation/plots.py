"""PNG plots of an evaluation, drawn with matplotlib's Agg backend (no display, no pyplot global state).

Per scenario: replicas per pool against the load over time, and each tenant's p90 TTFT and TPOT against its
SLO over time (per policy, the median over seeds with a min-max band); over everything: cost against the
lowest tenant attainment, one panel per scenario, one point per (policy, seed), filled when every tenant met
its target. Every figure gives a policy the same colour (:func:`policy_colours`), and keeps its legend outside
the data.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from disaggpilot.agent.evaluation.episode import EpisodeResult
from disaggpilot.agent.evaluation.scenarios import file_label
from disaggpilot.env.scenario import ScenarioConfig

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5")
"""Policy colours (matplotlib's tab10, then tab20's light shades), given out in order of sorted policy names."""
MARKERS = "osD^vP*Xh<>p"
"""Policy markers in the scatter plot, in the same order as the colours."""
TENANT_LINES = ("-", "--", ":", "-.")
"""Line styles of the tenants' arrival rates (colour is kept for policies)."""
Colours = dict[str, str]


def policy_colours(policies: Iterable[str]) -> Colours:
    """A colour per policy, from :data:`PALETTE` in order of the sorted names: the same in every figure."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(policies)))}


def _marker(colours: Colours, policy: str) -> str:
    return MARKERS[sorted(colours).index(policy) % len(MARKERS)] if policy in colours else "o"


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def _series(timeline: Sequence[dict[str, Any]], column: str) -> list[float]:
    return [float(row.get(column, math.nan)) for row in timeline]


def _minutes(timeline: Sequence[dict[str, Any]]) -> list[float]:
    return [float(row["time_s"]) / 60.0 for row in timeline]


def _roles(timeline: Sequence[dict[str, Any]]) -> list[str]:
    return [key.split("/", 1)[1] for key in timeline[0] if key.startswith("replicas_ready/")] if timeline else []


def _by_policy(episodes: Sequence[EpisodeResult]) -> dict[str, list[EpisodeResult]]:
    groups: dict[str, list[EpisodeResult]] = {}
    for episode in episodes:
        groups.setdefault(episode.policy, []).append(episode)
    return groups


Band = tuple[list[float], list[float], list[float], list[float]]
"""Minutes, then the median, lowest and highest value over seeds at each interval."""


def band(episodes: Sequence[EpisodeResult], value: Callable[[Sequence[dict[str, Any]]], list[float]]) -> Band:
    """The median and min-max of ``value(timeline)`` over the episodes' seeds, interval by interval (up to the
    shortest timeline; NaN where no seed has a value)."""
    length = min(len(episode.timeline) for episode in episodes)
    columns = list(zip(*[value(episode.timeline)[:length] for episode in episodes], strict=True))
    finite = [[v for v in column if not math.isnan(v)] for column in columns]
    pick = [(statistics.median(f), min(f), max(f)) if f else (math.nan,) * 3 for f in finite]
    minutes = _minutes(episodes[0].timeline[:length])
    return minutes, [p[0] for p in pick], [p[1] for p in pick], [p[2] for p in pick]


def _draw_band(axis: Axes, data: Band, colour: str, steps: bool = False, **line: Any) -> None:
    """The median as a line (steps for replica counts) over a translucent min-max band."""
    minutes, median, low, high = data
    if steps:
        axis.step(minutes, median, where="post", color=colour, linewidth=1.4, **line)
        axis.fill_between(minutes, low, high, step="post", color=colour, alpha=0.15, linewidth=0)
    else:
        axis.plot(minutes, median, color=colour, linewidth=1.2, **line)
        axis.fill_between(minutes, low, high, color=colour, alpha=0.15, linewidth=0)


def _legend(figure: Figure, colours: Colours, policies: Iterable[str], extra: Sequence[Line2D] = ()) -> None:
    handles = [Line2D([], [], color=colours[name], linewidth=2, label=name) for name in sorted(policies)]
    figure.legend(handles=[*handles, *extra], loc="outside right upper", fontsize="small", frameon=False,
                  title="policy")


def _seeds_note(episodes: Sequence[EpisodeResult]) -> str:
    seeds = sorted({episode.seed for episode in episodes})
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"median of {len(seeds)} seeds, band: min-max"


def plot_replicas(scenario: ScenarioConfig, episodes: Sequence[EpisodeResult], path: Path,
                  colours: Colours | None = None) -> Path:
    """Arrival rate per tenant (top), then replicas ready + starting per pool, per policy over seeds."""
    colours = colours or policy_colours(e.policy for e in episodes)
    groups = _by_policy(episodes)
    roles = _roles(episodes[0].timeline)
    figure = Figure(figsize=(11, 2.4 * (len(roles) + 1)), layout="constrained")
    axes = figure.subplots(len(roles) + 1, 1, sharex=True, squeeze=False)[:, 0]
    load = next(iter(groups.values()))  # every policy faces the same requests for a seed
    for i, tenant in enumerate(scenario.tenants):
        data = band(load, functools.partial(_series, column=f"arrival_rps/{tenant.name}"))
        _draw_band(axes[0], data, "black", linestyle=TENANT_LINES[i % len(TENANT_LINES)], label=tenant.name)
    axes[0].set_ylabel("arrivals (req/s)")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False, title="tenant")
    for axis, role in zip(axes[1:], roles, strict=True):
        def count(timeline: Sequence[dict[str, Any]], role: str = role) -> list[float]:
            return [a + b for a, b in zip(_series(timeline, f"replicas_ready/{role}"),
                                          _series(timeline, f"replicas_starting/{role}"), strict=True)]
        for policy in sorted(groups):
            _draw_band(axis, band(groups[policy], count), colours[policy], steps=True)
        axis.set_ylabel(f"{role} replicas")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("time (min)")
    _legend(figure, colours, groups)
    figure.suptitle(f"{scenario.name}: replicas (ready + starting) against load, {_seeds_note(episodes)}")
    return _save(figure, path)


def _latency_panel(axis: Axes, groups: dict[str, list[EpisodeResult]], column: str, slo_s: float, title: str,
                   colours: Colours) -> None:
    for policy in sorted(groups):
        _draw_band(axis, band(groups[policy], lambda t: _series(t, column)), colours[policy])
    axis.axhline(slo_s, color="black", linestyle="--", linewidth=1.2)
    axis.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.09, not 9×10⁻²
    axis.yaxis.set_major_formatter(plain)
    low, high = axis.get_ylim()
    axis.yaxis.set_minor_formatter(plain if high < 10 * low else NullFormatter())  # minor labels within a decade
    axis.set_title(f"{title}, SLO {slo_s:g} (dashed)", fontsize="medium")


def plot_latency(scenario: ScenarioConfig, episodes: Sequence[EpisodeResult], path: Path,
                 colours: Colours | None = None) -> Path:
    """Per tenant (rows): p90 TTFT and p90 TPOT (columns) per interval against the tenant's SLO."""
    colours = colours or policy_colours(e.policy for e in episodes)
    groups = _by_policy(episodes)
    tenants = scenario.tenants
    figure = Figure(figsize=(13, 2.7 * len(tenants) + 0.6), layout="constrained")
    axes = figure.subplots(len(tenants), 2, sharex=True, squeeze=False)
    for row, tenant in enumerate(tenants):
        _latency_panel(axes[row, 0], groups, f"ttft_p90_s/{tenant.name}", tenant.ttft_slo_s,
                       f"{tenant.name}: p90 TTFT (s)", colours)
        _latency_panel(axes[row, 1], groups, f"tpot_p90_s/{tenant.name}", tenant.tpot_slo_s,
                       f"{tenant.name}: p90 TPOT (s/token)", colours)
    for axis in axes[-1]:
        axis.set_xlabel("time (min)")
    slo = Line2D([], [], color="black", linestyle="--", linewidth=1.2, label="SLO")
    _legend(figure, colours, groups, [slo])
    figure.suptitle(f"{scenario.name}: p90 latency per interval against SLO, {_seeds_note(episodes)}")
    return _save(figure, path)


def _targets(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Tenant → attainment target, from the rows' ``target/<tenant>`` columns."""
    return {key.split("/", 1)[1]: float(value) for row in rows for key, value in row.items()
            if key.startswith("target/") and not math.isnan(float(value))}


def _cost_panel(axis: Axes, rows: Sequence[dict[str, Any]], scenario: str, colours: Colours) -> None:
    for row in rows:
        colour = colours[row["policy"]]
        axis.scatter(float(row["min_attainment"]), float(row["cost_usd"]), marker=_marker(colours, row["policy"]),
                     s=55, edgecolors=colour, facecolors=colour if row["meets_slo"] else "none", linewidths=1.4)
    tenants_by_target: dict[float, list[str]] = {}
    for tenant, target in _targets(rows).items():
        tenants_by_target.setdefault(target, []).append(tenant)
    for target, tenants in sorted(tenants_by_target.items()):
        axis.axvline(target, color="black", linestyle=":", linewidth=1)
        axis.annotate(f"target {target:g}: {', '.join(tenants)}", (target, 0.98), xycoords=("data", "axes fraction"),
                      rotation=90, ha="right", va="top", fontsize="x-small")
    axis.set_title(scenario, fontsize="medium")
    axis.set_xlabel("lowest tenant SLO attainment")
    axis.set_ylabel("episode cost (USD)")


def plot_cost_vs_attainment(rows: Sequence[dict[str, Any]], path: Path, colours: Colours | None = None) -> Path:
    """Cost (USD) against the lowest tenant attainment, a panel per scenario: filled points held every target."""
    colours = colours or policy_colours(row["policy"] for row in rows)
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    columns = min(3, len(scenarios))
    lines = math.ceil(len(scenarios) / columns)
    figure = Figure(figsize=(4.8 * columns + 3.0, 3.9 * lines + 0.5), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for axis, scenario in zip(axes, scenarios, strict=False):
        _cost_panel(axis, [row for row in rows if row["scenario"] == scenario], scenario, colours)
    for axis in axes[len(scenarios):]:
        axis.set_visible(False)
    policies = sorted({row["policy"] for row in rows})
    handles = [Line2D([], [], color=colours[p], marker=_marker(colours, p), linestyle="", label=p) for p in policies]
    handles += [Line2D([], [], color="black", marker="o", linestyle="", label="every tenant on target"),
                Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="",
                       label="a tenant missed")]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False, title="policy")
    figure.suptitle("cost against the lowest tenant attainment\n(a point per policy and seed; dotted: targets)")
    return _save(figure, path)


def plot_all(results: Sequence[EpisodeResult], scenarios: Sequence[ScenarioConfig], directory: Path) -> list[Path]:
    """Every plot of the evaluation into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    done = [result for result in results if result.error is None and result.timeline]
    colours = policy_colours(result.policy for result in done)
    paths: list[Path] = []
    for scenario in scenarios:
        episodes = [r for r in done if r.scenario == scenario.name]
        if not episodes:
            continue
        label = file_label(scenario.name)
        paths.append(plot_replicas(scenario, episodes, directory / f"replicas__{label}.png", colours))
        paths.append(plot_latency(scenario, episodes, directory / f"latency__{label}.png", colours))
    if done:
        paths.append(plot_cost_vs_attainment([r.row for r in done], directory / "cost_vs_attainment.png", colours))
    return paths
