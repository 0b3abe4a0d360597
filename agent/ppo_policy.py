"""A model's action indices behind the ``Policy`` interface; the trained PPO policy loaded from a bundle.

``ModelPolicy`` is the one place that turns a model's action indices into targets (decoded in ``delta``
mode, sized from measured demand in ``headroom`` mode). Training's validation wraps the model being trained
in it; ``PpoPolicy`` wraps a verified bundle's model. Both then play episodes through the evaluation
harness's one loop (``agent.evaluation.episode.play``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from disaggpilot.agent.bundle import Bundle, load_bundle, validate_spec
from disaggpilot.agent.errors import BundleError, PolicyStateError
from disaggpilot.agent.headroom import HeadroomSettings, HeadroomSizer, settings_from_spec
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.action import ActionCodec, ActionConfig
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.metrics import MetricsSnapshot

ActionPredictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(raw observation, action masks) -> action indices; the predictor normalises the observation itself."""


class ModelPolicy:
    """Runs a predictor of action indices: mask, predict, then decode (``delta``) or size (``headroom``).

    Args:
        predict: the model's (observation, masks) -> indices.
        action: the ``delta`` action's step and knob levels (the codec is built per episode, for its cluster).
        headroom: the utilisation levels in ``headroom`` mode; None in ``delta`` mode.
        name: the policy's name in results.
    """

    def __init__(self, predict: ActionPredictor, action: ActionConfig, headroom: HeadroomSettings | None = None,
                 name: str = "ppo") -> None:
        self.predict, self.action, self.name = predict, action, name
        self.codec: ActionCodec | None = None
        self.sizer = HeadroomSizer(headroom) if headroom else None

    def reset(self, context: PolicyContext) -> None:
        """Build the action decoder for this episode's cluster, and reset the sizer's demand window."""
        self.codec = ActionCodec(self.action, context.scenario.cluster)
        if self.sizer:
            self.sizer.reset(context.scenario, context.interval_s)

    @property
    def warm_up_intervals(self) -> int:
        """How many recent intervals :meth:`warm_up` uses: the sizer's longest demand window (0 without one)."""
        return max(self.sizer.settings.windows) if self.sizer else 0

    def warm_up(self, history: Sequence[MetricsSnapshot]) -> None:
        """Refill the sizer's demand window from intervals that ended before the first decision (a restarted
        controller's replay of its metrics store; oldest first), as if it had observed each as it ended."""
        if self.sizer:
            self.sizer.observe_recent(history)

    def raw_action(self, observation: np.ndarray, snapshot: MetricsSnapshot) -> np.ndarray:
        """The model's action indices for an observation, with the cluster's masks applied."""
        if self.codec is None:
            raise PolicyStateError(f"policy {self.name!r}: call reset(context) before act()")
        masks = np.ones(sum(self.sizer.settings.nvec), dtype=bool) if self.sizer else self.codec.masks(snapshot)
        return np.asarray(self.predict(observation, masks), dtype=np.int64).reshape(-1)

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """Targets for the next interval."""
        indices = self.raw_action(observation, history[-1])
        assert self.codec is not None  # raw_action raised otherwise
        if self.sizer is None:
            action, _ = self.codec.decode(indices, history[-1])
            return action
        if len(history) > 1:
            self.sizer.observe(history[-1])
        return self.sizer.targets(indices, history[-1])


class PpoPolicy(ModelPolicy):
    """A bundle's model: normalise the observation as in training, then as :class:`ModelPolicy`.

    Args:
        bundle: path to a bundle directory (never an untrusted location: the model is a pickle).
        expected_hash: refuse the bundle unless its content hash equals this.
        deterministic: take the most likely action (True for evaluation and production).
        name: the policy's name in results.
    """

    def __init__(self, bundle: str | Path, expected_hash: str | None = None, deterministic: bool = True,
                 name: str = "ppo") -> None:
        from sb3_contrib import MaskablePPO  # deferred: torch is heavy and only PPO needs it

        self.deterministic = deterministic
        self.bundle: Bundle = load_bundle(bundle, expected_hash=expected_hash)
        self.model = MaskablePPO.load(str(self.bundle.model_path), device="cpu")
        stats = self.bundle.normalization()
        self._mean = np.asarray(stats["mean"], dtype=np.float64) if stats else None
        self._std = np.sqrt(np.asarray(stats["var"], dtype=np.float64) + stats["epsilon"]) if stats else None
        self._clip = float(stats["clip_obs"]) if stats else None
        spec = self.bundle.spec
        action = ActionConfig(max_step=spec["max_step"], token_budget_levels=spec["token_budget_levels"],
                              batch_cap_levels=spec["batch_cap_levels"])
        super().__init__(self._predict, action, settings_from_spec(spec, self.bundle.path), name)
        self.trained_observation = self.bundle.trained_observation()
        """The observation settings it learned on (see :func:`agent.policy.environment_for`)."""

    def reset(self, context: PolicyContext) -> None:
        """Check the bundle against this episode's environment, then prepare as :class:`ModelPolicy`."""
        super().reset(context)
        assert self.codec is not None
        spec = self.bundle.spec
        if list(context.feature_names) and list(context.feature_names) != spec["observation_features"]:
            validate_spec({"observation_features": spec["observation_features"]},
                          {"observation_features": list(context.feature_names)}, self.bundle.path)
        nvec = self.sizer.settings.nvec if self.sizer else [int(n) for n in self.codec.nvec]
        if nvec != spec["action_nvec"]:
            raise BundleError(f"{self.bundle.path}: spec mismatch in 'action_nvec': the bundle has "
                              f"{spec['action_nvec']}, the cluster needs {nvec}")

    def normalize(self, observation: np.ndarray) -> np.ndarray:
        """The observation as the model saw observations in training."""
        if self._mean is None or self._std is None or self._clip is None:
            return observation.astype(np.float32)
        scaled = (observation - self._mean) / self._std
        return np.clip(scaled, -self._clip, self._clip).astype(np.float32)

    def _predict(self, observation: np.ndarray, masks: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(self.normalize(observation), deterministic=self.deterministic,
                                       action_masks=masks)
        return np.asarray(action)

    def describe(self) -> dict[str, Any]:
        """Identity of the loaded bundle, for logs and results."""
        return {"bundle": str(self.bundle.path), "sha256": self.bundle.content_hash}
