"""``disaggpilot evaluate``: every policy × scenario × seed on the same environment; tables, CSVs and plots.

A Hydra app over ``configs/evaluate.yaml``. For example::

    disaggpilot evaluate                                   # everything, 3 seeds, 2 worker processes
    disaggpilot evaluate only=[static,threshold] scenarios=[steady] seeds=[0] duration_s=1800 jobs=4
    disaggpilot evaluate scenarios=[steady] trace.path=data/traces/azure2023_conv.csv trace.format=azure
    disaggpilot evaluate launcher=ray ray.address=auto      # episodes as Ray tasks on a running cluster

The logic lives in ``agent.evaluation``; this module composes it: plan, run, write, print.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from disaggpilot.agent.config_store import register_configs
from disaggpilot.agent.evaluation import EpisodeResult, evaluate, plan_from_config, write_outputs
from disaggpilot.agent.evaluation.dispatch import progress_line
from disaggpilot.agent.evaluation.verdict import VerdictSettings
from disaggpilot.agent.ray_cluster import RayConfig, RayUnavailableError
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.errors import ConfigError, PermanentError
from disaggpilot.env.runlog import log_resolved_config, runlog
from disaggpilot.env.structured import build

log = logging.getLogger("disaggpilot.evaluate")
register_configs()  # the schemas configs/evaluate.yaml composes (agent/config_store.py)


class EpisodeProgress:
    """A progress bar on the terminal (none when stderr is not one) and a line per episode in the run's log."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="episode", desc="evaluate", disable=None, dynamic_ncols=True)

    def __call__(self, result: EpisodeResult, done: int, total: int) -> None:
        """Report one finished episode."""
        runlog("evaluate").info("%s", progress_line(result, done, total))
        self.bar.set_postfix_str(f"{result.policy} on {result.scenario} seed {result.seed}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        """Take the bar off the terminal."""
        self.bar.close()


def verdict_settings(cfg: DictConfig) -> VerdictSettings:
    """``verdict:`` of the config; a reference that names no configured policy is warned about (a typo would
    otherwise only show as n/a columns)."""
    raw = OmegaConf.to_container(cfg.verdict, resolve=True) if "verdict" in cfg else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"verdict={raw!r} is not a mapping: give verdict.reference and verdict.upper")
    settings = VerdictSettings(**{str(key): value for key, value in raw.items()})
    configured = cfg.get("policies") or {}
    for key in ("reference", "upper"):
        name = getattr(settings, key)
        if name and name not in configured:
            log.warning("verdict.%s=%s is not a configured policy: its ratios say n/a (name one of `policies`, or "
                        "null)", key, name)
    return settings


def ray_settings(cfg: DictConfig) -> RayConfig | None:
    """The Ray settings when ``launcher=ray``; None runs the episodes in local processes."""
    launcher = str(cfg.get("launcher", "local"))
    if launcher not in ("local", "ray"):
        raise ConfigError(f"launcher={launcher!r} is invalid: use launcher=local or launcher=ray")
    if launcher == "local":
        return None
    return build(RayConfig, cfg.ray if "ray" in cfg else {})


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``disaggpilot evaluate``."""
    # ----- plan: policies are built and scenarios loaded here, so config errors stop us before any episode
    try:
        plan = plan_from_config(cfg)
        ray = ray_settings(cfg)
        verdict = verdict_settings(cfg)
    except (PermanentError, TypeError) as error:
        raise SystemExit(f"disaggpilot evaluate: {error}") from None
    log_resolved_config("evaluate", cfg)
    tasks = len(plan.tasks())
    log.info("%d episodes (%d policies x %d scenarios x %d seeds), %s", tasks, len(plan.specs),
             len(plan.scenarios), len(plan.seeds), f"jobs={plan.jobs}" if ray is None else "as Ray tasks")

    # ----- run
    progress = EpisodeProgress(tasks)
    try:
        results = evaluate(plan, progress, ray=ray)
    except RayUnavailableError as error:  # Ray missing, or no cluster at ray.address
        raise SystemExit(f"disaggpilot evaluate: {error}") from None
    finally:
        progress.close()

    # ----- write and report
    outputs = write_outputs(results, plan.scenarios, Path(str(cfg.output_dir)), plan.describe(), bool(cfg.plots),
                            verdict)
    print(outputs.verdict)
    print(f"summary: {outputs.summary_md}")
    print(f"results: {outputs.results_csv}")
    print(f"timelines: {outputs.directory / 'timeline'}")
    if outputs.plots:
        print(f"plots: {outputs.directory / 'plots'} ({len(outputs.plots)} PNGs)")
    for failure in outputs.failures:
        log.error("episode %s on %s seed %d failed:\n%s", failure.policy, failure.scenario, failure.seed,
                  failure.error)
    if outputs.failures:
        raise SystemExit(f"disaggpilot evaluate: {len(outputs.failures)} of {tasks} episodes failed; see the log "
                         f"and {outputs.summary_md}")
