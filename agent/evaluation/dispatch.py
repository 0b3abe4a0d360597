"""What every episode launcher shares: the order tasks are submitted in, the result of a lost episode, and
the progress report after each episode.

The local runner (:mod:`agent.evaluation.runner`) and the Ray launcher (:mod:`agent.evaluation.ray_launcher`)
both import this module and never each other the other way round: the runner picks the Ray launcher, the
Ray launcher needs nothing of the runner (an import-linter contract in ``pyproject.toml`` keeps it so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from disaggpilot.agent.evaluation.episode import EpisodeResult, EpisodeTask

log = logging.getLogger("disaggpilot.evaluate")

Progress = Callable[[EpisodeResult, int, int], None]
"""Called after each episode with its result, the number done and the total."""


def submission_order(tasks: Sequence[EpisodeTask]) -> list[EpisodeTask]:
    """Tasks with a hindsight search first (the longest), then in task order."""
    return sorted(tasks, key=lambda t: (not t.prepares, t.index))


def lost_episode(task: EpisodeTask, error: BaseException) -> EpisodeResult:
    """The error result of an episode whose worker failed (the episode is lost, not the evaluation)."""
    return EpisodeResult(task.index, task.policy.name, task.scenario.name, task.seed,
                         error=f"worker process failed: {type(error).__name__}: {error}")


def progress_line(result: EpisodeResult, done: int, total: int) -> str:
    """``[3/27] static on steady seed 0: 410740 tok/$`` (or ``FAILED``)."""
    status = "FAILED" if result.error else f"{result.row['goodput_tokens_per_usd']:.0f} tok/$"
    return f"[{done}/{total}] {result.policy} on {result.scenario} seed {result.seed}: {status}"


def log_progress(result: EpisodeResult, done: int, total: int) -> None:
    """The default progress report: one log line per finished episode."""
    log.info("%s", progress_line(result, done, total))
