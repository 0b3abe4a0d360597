"""Fakes for controller tests, shipped in the package like ``env.testing``: actuators that fail on cue,
policies that propose fixed targets or raise, and a source that corrupts chosen snapshots.

They pair with ``env.testing.ScriptedBackend`` (exact snapshots) and ``controller.clock.VirtualClock``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from disaggpilot.agent.policy import PolicyContext
from disaggpilot.controller.errors import TemporaryError
from disaggpilot.controller.loop import MetricsSource
from disaggpilot.env.backend import ClusterAction, ClusterBackend
from disaggpilot.env.metrics import MetricsSnapshot


class FlakyActuator:
    """Raises ``error()`` on the calls numbered in ``failing`` (from 1), applies the others.

    Args:
        failing: call numbers that fail.
        error: builds the exception to raise (default: a ``TemporaryError`` with no delay).
        backend: where successful calls go (None: nowhere).
    """

    def __init__(self, failing: Sequence[int] = (), error: Callable[[], Exception] | None = None,
                 backend: ClusterBackend | None = None) -> None:
        self.failing, self.backend = set(failing), backend
        self.error = error or (lambda: TemporaryError("the API server answered 503", delay_s=0.0))
        self.calls: list[ClusterAction] = []
        self.applied: list[ClusterAction] = []

    def apply(self, action: ClusterAction) -> None:
        """Fail or apply, per the script."""
        self.calls.append(action)
        if len(self.calls) in self.failing:
            raise self.error()
        self.applied.append(action)
        if self.backend is not None:
            self.backend.apply(action)


class FixedPolicy:
    """Proposes the same replica targets every interval (and raises on the ``act`` calls in ``failing``).

    Args:
        targets: replicas per pool role.
        failing: ``act`` call numbers (from 1) that raise ``RuntimeError``.
        name: the policy's name.
    """

    def __init__(self, targets: Mapping[str, int], failing: Sequence[int] = (), name: str = "fixed") -> None:
        self.targets, self.failing, self.name = dict(targets), set(failing), name
        self.calls = 0

    def reset(self, context: PolicyContext) -> None:
        """Nothing to prepare."""

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """The fixed targets, or an exception on a failing call."""
        self.calls += 1
        if self.calls in self.failing:
            raise RuntimeError(f"policy failure on call {self.calls}")
        return ClusterAction.replicas(**self.targets)


class TamperedSource:
    """Wraps a source and passes the snapshots of chosen ``advance`` calls (from 1) through a function.

    Args:
        source: the real source (e.g. ``ScriptedBackend``).
        tamper: per call number, a function that edits the snapshot in place.
        errors: per call number, an exception to raise instead of returning a snapshot.
    """

    def __init__(self, source: MetricsSource, tamper: Mapping[int, Callable[[MetricsSnapshot], None]] | None = None,
                 errors: Mapping[int, Exception] | None = None) -> None:
        self.source, self.tamper, self.errors = source, dict(tamper or {}), dict(errors or {})
        self.calls = 0

    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        """The wrapped source's first snapshot."""
        return self.source.reset(seed)

    def advance(self, seconds: float) -> MetricsSnapshot:
        """The wrapped snapshot, edited or replaced by an error on the chosen calls."""
        self.calls += 1
        if self.calls in self.errors:
            raise self.errors[self.calls]
        snapshot = self.source.advance(seconds)
        if self.calls in self.tamper:
            self.tamper[self.calls](snapshot)
        return snapshot
