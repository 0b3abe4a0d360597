"""Training callbacks: namespaced metrics from ``info``, checkpoints, and validation with early stopping."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from disaggpilot.agent.training.validation import ValidationResult

log = logging.getLogger("disaggpilot.train")
LOGGED_PREFIXES = ("econ/", "slo/", "reward/", "action/")


class InfoLoggerCallback(BaseCallback):
    """Averages the environment's numeric ``info`` terms over each rollout and logs them under their own
    names (``econ/tokens_per_dollar``, ``slo/<tenant>/attainment``, ``reward/<term>``) to TensorBoard."""

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            for key, value in info.items():
                if key.startswith(LOGGED_PREFIXES) and isinstance(value, int | float) and math.isfinite(value):
                    self._sums[key] += float(value)
                    self._counts[key] += 1
        return True

    def _on_rollout_end(self) -> None:
        for key, total in self._sums.items():
            self.logger.record(key, total / self._counts[key])
        self._sums.clear()
        self._counts.clear()


class ActorRestartCallback(BaseCallback):
    """Logs ``ray/actor_restarts`` (restarts so far) to TensorBoard at each rollout's end, and says in the log
    when a rollout actor was restarted (``vec_env=ray``; other vectorised environments never restart)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        restarts = int(getattr(self.training_env.unwrapped, "restart_count", 0))
        if restarts > self._seen:
            log.warning("%d rollout actor restart(s) during this rollout (%d in total); their episodes were reset",
                        restarts - self._seen, restarts)
        self._seen = restarts
        self.logger.record("ray/actor_restarts", restarts)


def save_checkpoint(model: object, directory: Path) -> None:
    """Model and normalisation statistics, resumable with ``run.resume_from``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save(str(directory / "model.zip"))  # type: ignore[attr-defined]
    normalizer = model.get_vec_normalize_env()  # type: ignore[attr-defined]
    if isinstance(normalizer, VecNormalize):
        normalizer.save(str(directory / "vecnormalize.pkl"))


class CheckpointEveryCallback(BaseCallback):
    """Saves ``checkpoints/latest`` every ``every`` environment steps."""

    def __init__(self, directory: Path, every: int) -> None:
        super().__init__()
        self.directory, self.every, self._last = directory, every, 0

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            save_checkpoint(self.model, self.directory / "latest")
        return True


class ValidationCallback(BaseCallback):
    """Every ``every`` steps: validate, log ``eval/*`` beside the SLA planner's figures, keep the best model
    in ``best/`` (:meth:`ValidationResult.better_than`: it holds on every scenario and earns more), and stop when
    ``patience`` validations pass without improvement.

    Args:
        validate: runs the current model greedily on the validation episodes.
        reference: the SLA planner's result on the same episodes (None when unavailable).
        directory: where ``best/`` goes.
        every: validation period (environment steps).
        patience: validations without improvement before stopping (0: never stop early).
        at_start: also validate the untrained model (at 0 steps) when validation is on.
    """

    def __init__(self, validate: Callable[[], ValidationResult], reference: ValidationResult | None,
                 directory: Path, every: int, patience: int, at_start: bool = False) -> None:
        super().__init__()
        self.validate, self.reference, self.directory = validate, reference, directory
        self.every, self.patience, self.at_start = every, patience, at_start
        self.best: ValidationResult | None = None
        self.stale, self._last = 0, 0
        self.history: list[tuple[int, ValidationResult]] = []

    @property
    def best_score(self) -> float:
        """The kept model's :meth:`ValidationResult.score` (-inf before any validation)."""
        return self.best.score() if self.best is not None else -np.inf

    def _on_training_start(self) -> None:
        if self.every and self.at_start:
            self._last = self.num_timesteps
            self.run_validation()

    def _on_step(self) -> bool:
        if not self.every or self.num_timesteps - self._last < self.every:
            return True
        self._last = self.num_timesteps
        return self.run_validation()

    def judged_latest(self) -> bool:
        """Whether the latest validation ran at the current step count: then the final model has been judged
        already (an early stop, or a budget that ends on a validation step) and need not run again."""
        return bool(self.history) and self.history[-1][0] == self.num_timesteps

    def run_validation(self) -> bool:
        """Validate now; False when training should stop."""
        result = self.validate()
        self.history.append((self.num_timesteps, result))
        self._record("eval/ppo", result)
        if self.reference is not None:
            self._record("eval/sla_planner", self.reference)
            self.logger.record("eval/tokens_per_dollar_vs_sla_planner",
                               result.tokens_per_usd / max(self.reference.tokens_per_usd, 1e-9))
        log.info("validation at %d steps: %.0f tokens/$, holds %s (bound shortfall %.4f), score %.4f",
                 self.num_timesteps, result.tokens_per_usd, result.holds, result.shortfall, result.score())
        if result.better_than(self.best):
            self.best, self.stale = result, 0
            save_checkpoint(self.model, self.directory / "best")
        else:
            self.stale += 1
        self.logger.dump(self.num_timesteps)
        if self.patience and self.stale >= self.patience:
            log.info("early stop: %d validations without improvement", self.stale)
            return False
        return True

    def _record(self, prefix: str, result: ValidationResult) -> None:
        self.logger.record(f"{prefix}/tokens_per_dollar", result.tokens_per_usd)
        self.logger.record(f"{prefix}/slo_shortfall", result.shortfall)
        self.logger.record(f"{prefix}/min_attainment", result.min_attainment)
        self.logger.record(f"{prefix}/score", result.score())
        for scenario in result.scenarios:
            self.logger.record(f"{prefix}/{scenario.scenario}/tokens_per_dollar", scenario.tokens_per_usd)
            self.logger.record(f"{prefix}/{scenario.scenario}/slo_shortfall", scenario.shortfall(result.confidence))
