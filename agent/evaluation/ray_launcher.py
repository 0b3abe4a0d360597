"""Evaluation episodes as Ray tasks (``disaggpilot evaluate launcher=ray``).

Each (policy, scenario, seed) episode is one Ray task running :func:`run_episode_safely`, the function a
local worker process runs, on the same picklable :class:`EpisodeTask`; so ``results.csv`` is the same as
the local run's (wall-time columns aside), whatever node ran which episode. Hindsight-search episodes are
submitted first, as locally. Ray reruns a task whose worker died up to ``ray.max_restarts`` times; an
episode still lost after that, or with no answer within ``ray.timeout_s``, is reported as failed and never
loses the other episodes' results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from disaggpilot.agent.evaluation.dispatch import Progress, log_progress, lost_episode, submission_order
from disaggpilot.agent.evaluation.episode import EpisodeResult, EpisodeTask, run_episode_safely
from disaggpilot.agent.ray_cluster import RayConfig, RayWorkerError, ray_session


def run_tasks_on_ray(tasks: Sequence[EpisodeTask], config: RayConfig,
                     progress: Progress | None = None) -> list[EpisodeResult]:
    """Run every task as a Ray task; the results come back in task order.

    Args:
        tasks: the episodes.
        config: the cluster (or a local Ray), CPUs per task, retries and the timeout.
        progress: called after each episode finishes.
    """
    report = progress or log_progress
    with ray_session(config) as ray:
        remote = ray.remote(run_episode_safely).options(num_cpus=config.cpus_per_worker,
                                                       max_retries=config.max_restarts)
        submitted = {remote.remote(task): task for task in submission_order(tasks)}
        results: dict[int, EpisodeResult] = {}
        pending = list(submitted)
        while pending:
            finished, pending = ray.wait(pending, num_returns=1, timeout=config.timeout_s)
            stalled = not finished  # nothing finished within the timeout: the rest are given up
            for ref in pending if stalled else finished:
                task = submitted[ref]
                results[task.index] = _timed_out(ray, ref, task, config) if stalled else _result(ray, ref, task,
                                                                                                 config)
                report(results[task.index], len(results), len(tasks))
            pending = [] if stalled else pending
    return [results[task.index] for task in tasks]


def _result(ray: Any, ref: Any, task: EpisodeTask, config: RayConfig) -> EpisodeResult:
    """A finished task's result, or an error result when its worker died more often than allowed."""
    try:
        result: EpisodeResult = ray.get(ref, timeout=config.timeout_s)
        return result
    except ray.exceptions.RayError as error:
        return lost_episode(task, error)


def _timed_out(ray: Any, ref: Any, task: EpisodeTask, config: RayConfig) -> EpisodeResult:
    """Cancel a task that gave no answer within the timeout; its episode is reported as failed."""
    ray.cancel(ref, force=True)
    return lost_episode(task, RayWorkerError(f"no episode finished within ray.timeout_s={config.timeout_s}"))
