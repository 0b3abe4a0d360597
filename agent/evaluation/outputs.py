"""Write an evaluation's files into its run directory.

- ``results.csv``: one row per (policy, scenario, seed); per-tenant and per-pool columns are the union over
  scenarios (empty where a scenario has no such tenant or pool).
- ``timeline/<policy>__<scenario>__<seed>.csv``: one row per control interval.
- ``summary.md``: the verdict, overview and per-scenario tables (``agent.evaluation.report``).
- ``plots/*.png`` (``agent.evaluation.plots``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disaggpilot.agent.evaluation.episode import EpisodeResult
from disaggpilot.agent.evaluation.report import summary_markdown, verdict_markdown
from disaggpilot.agent.evaluation.scenarios import file_label
from disaggpilot.agent.evaluation.verdict import VerdictSettings
from disaggpilot.env.scenario import ScenarioConfig


@dataclass
class EvaluationOutputs:
    """Where an evaluation's files went, the summary text and the verdict (the part a terminal shows)."""

    directory: Path
    results_csv: Path
    summary_md: Path
    summary: str
    verdict: str = ""
    timelines: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    failures: list[EpisodeResult] = field(default_factory=list)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write ``rows`` with the union of their keys as the header, in order of first appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def timeline_path(directory: Path, result: EpisodeResult) -> Path:
    """``<directory>/timeline/<policy>__<scenario>__<seed>.csv``."""
    name = f"{file_label(result.policy)}__{file_label(result.scenario)}__{result.seed}.csv"
    return directory / "timeline" / name


def write_outputs(results: Sequence[EpisodeResult], scenarios: Sequence[ScenarioConfig], directory: Path,
                  header: Sequence[str] = (), plots: bool = True,
                  verdict: VerdictSettings | None = None) -> EvaluationOutputs:
    """Write every file of the evaluation into ``directory``.

    Args:
        results: the episodes, in task order (failed ones are listed in the summary, not in the CSVs).
        scenarios: the scenarios evaluated (their tenants' SLOs are drawn in the latency plots).
        directory: the run directory.
        header: lines of context written at the top of ``summary.md`` (settings, seeds).
        plots: whether to draw the PNGs.
        verdict: the references of the verdict's ratio columns (default: ``VerdictSettings()``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    done = [result for result in results if result.error is None]
    results_csv = write_csv([result.row for result in done], directory / "results.csv")
    timelines = [write_csv(result.timeline, timeline_path(directory, result)) for result in done]
    drawn: list[Path] = []
    if plots and done:
        from disaggpilot.agent.evaluation.plots import plot_all  # matplotlib is imported only when plots are drawn

        drawn = plot_all(done, scenarios, directory / "plots")
    summary = summary_markdown(results, drawn, header, verdict)
    summary_md = directory / "summary.md"
    summary_md.write_text(summary)
    return EvaluationOutputs(directory=directory, results_csv=results_csv, summary_md=summary_md, summary=summary,
                             verdict=verdict_markdown([result.row for result in done], verdict),
                             timelines=timelines, plots=drawn, failures=[r for r in results if r.error is not None])
