"""A training run's TensorBoard scalars as plain series, and the facts of the run they belong to.

``disaggpilot train`` writes its event files under ``<run>/tensorboard/ppo_<n>/`` (one folder per
``learn`` call, so a resumed run adds one); the keys are SB3's (``rollout/ep_rew_mean``, ``train/*``,
``time/fps``), the environment's ``info`` averaged per rollout (``econ/tokens_per_dollar``,
``slo/<tenant>/attainment``, ``reward/<term>``, ``action/*``) and validation (``eval/ppo/*``,
``eval/sla_planner/*``). Series from several event files of one run are merged by step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from disaggpilot.agent.analysis.sources import AnalysisError, resolve_path
from disaggpilot.env.errors import require
from disaggpilot.env.scenario import load_scenario

EVENTS_GLOB = "events.out.tfevents.*"


@dataclass
class Series:
    """One scalar over training: environment steps and values, in step order."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def last(self) -> float:
        """The final value (NaN when empty)."""
        return self.values[-1] if self.values else math.nan


def find_runs(path: str | Path) -> list[Path]:
    """The training runs at or under ``path``: directories holding a ``tensorboard/`` folder with event
    files (a single run, or a Hydra multirun sweep's job folders), sorted.

    Raises:
        AnalysisError: ``path`` does not exist or holds no TensorBoard event files.
    """
    root = resolve_path(path)
    if not root.is_dir():
        raise AnalysisError(f"run_dir {str(path)!r}: no directory {root}; give a `disaggpilot train` run "
                            "directory (hydra.run.dir, e.g. outputs/main/train) or a sweep directory")
    runs = sorted({event.parent.parent.parent for event in root.rglob(f"tensorboard/*/{EVENTS_GLOB}")})
    if not runs:
        raise AnalysisError(f"run_dir {str(path)!r}: no TensorBoard event files under {root}/**/tensorboard/; "
                            "is it a `disaggpilot train` run directory?")
    return runs


def load_scalars(run: str | Path) -> dict[str, Series]:
    """Every scalar of the run at ``run``: tag → series, merged over its event files, sorted by step (the
    later file wins a step written twice, as after a resume).

    Raises:
        AnalysisError: the run holds no event files.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # heavy import

    directory = resolve_path(run) / "tensorboard"
    folders = sorted({event.parent for event in directory.glob(f"*/{EVENTS_GLOB}")},
                     key=lambda folder: min(e.stat().st_mtime for e in folder.glob(EVENTS_GLOB)))
    if not folders:
        raise AnalysisError(f"run {str(run)!r}: no TensorBoard event files in {directory}/*/")
    merged: dict[str, dict[int, float]] = {}
    for folder in folders:
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            points = merged.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                points[int(event.step)] = float(event.value)
    return {tag: Series(sorted(points), [points[s] for s in sorted(points)]) for tag, points in sorted(merged.items())}


def tags_under(scalars: dict[str, Series], prefix: str) -> list[str]:
    """The tags starting with ``prefix`` (e.g. ``slo/`` and ending ``/attainment``: see the notebook)."""
    return [tag for tag in scalars if tag.startswith(prefix)]


def smooth(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """TensorBoard's exponential moving average with debiasing; ``weight`` in [0, 1), 0 returns the input."""
    require(0 <= weight < 1, "weight", weight, "use a smoothing weight in [0, 1)")
    smoothed, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**count))
    return smoothed


def run_config(run: str | Path) -> dict[str, object]:
    """The run's resolved config: ``bundle/config.yaml`` when the bundle exists, else ``.hydra/config.yaml``.

    Raises:
        AnalysisError: neither file exists.
    """
    directory = resolve_path(run)
    for candidate in (directory / "bundle" / "config.yaml", directory / ".hydra" / "config.yaml"):
        if candidate.is_file():
            raw = OmegaConf.to_container(OmegaConf.load(candidate), resolve=False)
            assert isinstance(raw, dict)
            return {str(key): value for key, value in raw.items()}
    raise AnalysisError(f"run {str(run)!r}: no bundle/config.yaml or .hydra/config.yaml in {directory}")


def attainment_targets(run: str | Path) -> dict[str, float]:
    """Tenant → attainment target over the run's training scenarios (``run.scenarios``); where scenarios of a
    mix give one tenant name different targets, the highest (the logged attainment averages over them)."""
    settings = run_config(run).get("run", {})
    names = settings.get("scenarios", ["steady"]) if isinstance(settings, dict) else ["steady"]
    targets: dict[str, float] = {}
    for name in names:
        for tenant in load_scenario(str(name)).tenants:
            targets[tenant.name] = max(targets.get(tenant.name, 0.0), tenant.attainment_target)
    return targets
