"""Run an evaluation's episodes, in this process (``jobs=1``) or in a pool of worker processes.

Each episode depends only on its task (policy config, scenario, seed, env and reward settings), never on
which process ran it or in which order, so results are identical for any ``jobs``; they are returned in
task order. Episodes of policies that search before they start (``static_oracle``) are submitted first,
so the longest tasks do not finish last. Workers are started with ``start_method`` (``spawn`` by default:
a fresh interpreter that inherits no threads or locks from the caller). A failed episode, even one whose
worker died, is reported in its result and never loses the other episodes' results. With a
:class:`~agent.ray_cluster.RayConfig` (``launcher=ray``) the episodes run as Ray tasks instead
(``agent.evaluation.ray_launcher``), with the same results.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from disaggpilot.agent.evaluation.dispatch import Progress, log_progress, lost_episode, submission_order
from disaggpilot.agent.evaluation.episode import EpisodeResult, EpisodeTask, run_episode_safely
from disaggpilot.agent.evaluation.plan import EvaluationPlan
from disaggpilot.agent.ray_cluster import RayConfig
from disaggpilot.env.errors import require


def worker_count(jobs: int, tasks: int) -> int:
    """Processes to use: ``jobs`` (0 means every CPU), never more than there are tasks."""
    require(jobs >= 0, "jobs", jobs, "use a number of worker processes >= 1 (1 runs in-process; 0: every CPU)")
    wanted = jobs or os.cpu_count() or 1
    return max(1, min(wanted, tasks))


def run_tasks(tasks: Sequence[EpisodeTask], jobs: int = 1, start_method: str = "spawn",
              progress: Progress | None = None) -> list[EpisodeResult]:
    """Run every task; the results come back in task order whatever ``jobs`` is.

    Args:
        tasks: the episodes.
        jobs: worker processes; 1 runs in this process, 0 uses every CPU.
        start_method: ``spawn``, ``forkserver`` or ``fork`` (how workers start; see ``multiprocessing``).
        progress: called after each episode finishes.
    """
    methods = multiprocessing.get_all_start_methods()
    require(start_method in methods, "start_method", start_method, f"use one of {methods}")
    workers = worker_count(jobs, len(tasks))
    report = progress or log_progress
    if workers == 1:
        results = []
        for done, task in enumerate(tasks, start=1):
            results.append(run_episode_safely(task))
            report(results[-1], done, len(tasks))
        return results
    return _run_in_pool(tasks, workers, start_method, report)


def _run_in_pool(tasks: Sequence[EpisodeTask], workers: int, start_method: str,
                 report: Progress) -> list[EpisodeResult]:
    context = multiprocessing.get_context(start_method)
    results: dict[int, EpisodeResult] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures: dict[Future[EpisodeResult], EpisodeTask] = {pool.submit(run_episode_safely, t): t
                                                             for t in submission_order(tasks)}
        for future in as_completed(futures):
            task = futures[future]
            results[task.index] = _collect(future, task)
            report(results[task.index], len(results), len(tasks))
    return [results[task.index] for task in tasks]


def _collect(future: Future[EpisodeResult], task: EpisodeTask) -> EpisodeResult:
    """The future's result, or an error result when its worker died (killed, out of memory, unpicklable)."""
    try:
        return future.result()
    except Exception as error:  # BrokenProcessPool, PicklingError: the episode is lost, not the evaluation
        return lost_episode(task, error)


def evaluate(plan: EvaluationPlan, progress: Progress | None = None, ray: RayConfig | None = None
             ) -> list[EpisodeResult]:
    """Run every episode of ``plan``; results in task order.

    Args:
        plan: the episodes, and ``jobs``/``start_method`` for local worker processes.
        progress: called after each episode finishes.
        ray: run the episodes as Ray tasks with these settings instead (``launcher=ray``); None: locally.
    """
    if ray is not None:
        from disaggpilot.agent.evaluation.ray_launcher import run_tasks_on_ray  # imports Ray

        return run_tasks_on_ray(plan.tasks(), ray, progress)
    return run_tasks(plan.tasks(), plan.jobs, plan.start_method, progress)
