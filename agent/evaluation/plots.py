"""PNG plots of an evaluation, drawn with matplotlib's Agg backend (no display, no pyplot global state).

Per scenario: replicas per pool against the load over time, and each tenant's p90 TTFT and TPOT against its
SLO over time (one line per policy, on the first seed); over everything: cost against the lowest tenant
attainment, one point per (policy, scenario, seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agent.evaluation.episode import EpisodeResult
from agent.evaluation.scenarios import file_label
from env.scenario import ScenarioConfig

MARKERS = "osD^vP*Xh<>"


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


def plot_replicas(scenario: ScenarioConfig, episodes: Sequence[EpisodeResult], path: Path) -> Path:
    """Arrival rate per tenant (top), then replicas ready + starting per pool, one line per policy."""
    roles = _roles(episodes[0].timeline)
    figure = Figure(figsize=(10, 2.6 * (len(roles) + 1)), layout="constrained")
    axes = figure.subplots(len(roles) + 1, 1, sharex=True, squeeze=False)[:, 0]
    load = episodes[0].timeline
    for tenant in scenario.tenants:
        axes[0].plot(_minutes(load), _series(load, f"arrival_rps/{tenant.name}"), label=tenant.name)
    axes[0].set_ylabel("arrivals (req/s)")
    axes[0].legend(loc="upper right", fontsize="small")
    for axis, role in zip(axes[1:], roles, strict=True):
        for episode in episodes:
            counts = [a + b for a, b in zip(_series(episode.timeline, f"replicas_ready/{role}"),
                                            _series(episode.timeline, f"replicas_starting/{role}"), strict=True)]
            axis.step(_minutes(episode.timeline), counts, where="post", label=episode.policy)
        axis.set_ylabel(f"{role} replicas")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(loc="upper right", fontsize="small", ncol=2)
    axes[-1].set_xlabel("time (min)")
    figure.suptitle(f"{scenario.name}: replicas (ready + starting) against load, seed {episodes[0].seed}")
    return _save(figure, path)


def _latency_panel(axis: Axes, episodes: Sequence[EpisodeResult], column: str, slo_s: float, title: str) -> None:
    for episode in episodes:
        axis.plot(_minutes(episode.timeline), _series(episode.timeline, column), label=episode.policy)
    axis.axhline(slo_s, color="black", linestyle="--", linewidth=1, label="SLO")
    axis.set_yscale("log")
    axis.set_title(f"{title}, SLO {slo_s:g}", fontsize="medium")


def plot_latency(scenario: ScenarioConfig, episodes: Sequence[EpisodeResult], path: Path) -> Path:
    """Per tenant (rows): p90 TTFT and p90 TPOT (columns) per interval against the tenant's SLO."""
    tenants = scenario.tenants
    figure = Figure(figsize=(12, 2.8 * len(tenants)), layout="constrained")
    axes = figure.subplots(len(tenants), 2, sharex=True, squeeze=False)
    for row, tenant in enumerate(tenants):
        _latency_panel(axes[row, 0], episodes, f"ttft_p90_s/{tenant.name}", tenant.ttft_slo_s,
                       f"{tenant.name}: p90 TTFT (s)")
        _latency_panel(axes[row, 1], episodes, f"tpot_p90_s/{tenant.name}", tenant.tpot_slo_s,
                       f"{tenant.name}: p90 TPOT (s/token)")
    axes[0, 1].legend(loc="upper right", fontsize="small")
    for axis in axes[-1]:
        axis.set_xlabel("time (min)")
    figure.suptitle(f"{scenario.name}: p90 latency per interval against SLO, seed {episodes[0].seed}")
    return _save(figure, path)


def plot_cost_vs_attainment(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Cost (USD) against the lowest tenant attainment: colour per policy, marker per scenario."""
    figure = Figure(figsize=(8, 6), layout="constrained")
    axis = figure.subplots()
    policies = list(dict.fromkeys(row["policy"] for row in rows))
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    colours = {policy: f"C{i % 10}" for i, policy in enumerate(policies)}
    for row in rows:
        marker = MARKERS[scenarios.index(row["scenario"]) % len(MARKERS)]
        axis.scatter(row["min_attainment"], row["cost_usd"], color=colours[row["policy"]], marker=marker, alpha=0.8)
    for policy in policies:
        axis.scatter([], [], color=colours[policy], marker="o", label=policy)
    for i, scenario in enumerate(scenarios):
        axis.scatter([], [], color="grey", marker=MARKERS[i % len(MARKERS)], label=scenario)
    axis.set_xlabel("minimum tenant SLO attainment")
    axis.set_ylabel("episode cost (USD)")
    axis.legend(fontsize="small", ncol=2)
    axis.set_title("cost against minimum attainment (one point per policy, scenario, seed)")
    return _save(figure, path)


def plot_all(results: Sequence[EpisodeResult], scenarios: Sequence[ScenarioConfig], directory: Path) -> list[Path]:
    """Every plot of the evaluation into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    done = [result for result in results if result.error is None]
    paths: list[Path] = []
    for scenario in scenarios:
        episodes = [r for r in done if r.scenario == scenario.name]
        if not episodes:
            continue
        first_seed = min(r.seed for r in episodes)
        shown = [r for r in episodes if r.seed == first_seed]
        label = file_label(scenario.name)
        paths.append(plot_replicas(scenario, shown, directory / f"replicas__{label}.png"))
        paths.append(plot_latency(scenario, shown, directory / f"latency__{label}.png"))
    if done:
        paths.append(plot_cost_vs_attainment([r.row for r in done], directory / "cost_vs_attainment.png"))
    return paths
