"""The one interface every cluster backend implements (docs/architecture.md), and the action it takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot

POOL_ROLES: tuple[str, ...] = ("prefill", "decode", "aggregated")


@dataclass(frozen=True)
class PoolTarget:
    """What a controller wants of one pool. ``None`` leaves a setting as it is.

    Attributes:
        replicas: target replica count (replicas, >= 0).
        max_num_batched_tokens: prefill token budget per iteration (tokens; vLLM
            ``--max-num-batched-tokens``).
        max_num_seqs: batch cap, concurrent sequences per replica (vLLM ``--max-num-seqs``).
    """

    replicas: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None

    def __post_init__(self) -> None:
        require(self.replicas is None or self.replicas >= 0, "replicas", self.replicas, "use a count >= 0")
        require(
            self.max_num_batched_tokens is None or self.max_num_batched_tokens >= 1,
            "max_num_batched_tokens", self.max_num_batched_tokens, "use a token budget >= 1",
        )
        require(
            self.max_num_seqs is None or self.max_num_seqs >= 1,
            "max_num_seqs", self.max_num_seqs, "use a batch cap >= 1",
        )


@dataclass(frozen=True)
class ClusterAction:
    """Targets for the pools (not deltas); the shield has already been applied.

    Attributes:
        pools: target per pool role (``prefill``, ``decode``, ``aggregated``); a missing role is left as is.
    """

    pools: dict[str, PoolTarget] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role in self.pools:
            require(role in POOL_ROLES, "ClusterAction.pools", role, f"use one of {POOL_ROLES}")

    @classmethod
    def replicas(cls, **counts: int) -> ClusterAction:
        """Shorthand: ``ClusterAction.replicas(prefill=4, decode=6)``."""
        return cls({role: PoolTarget(replicas=count) for role, count in counts.items()})


@runtime_checkable
class ClusterBackend(Protocol):
    """A cluster the environment and the controller can observe and steer.

    ``reset`` starts an episode (the simulator re-seeds; a live backend takes its first scrape), ``apply``
    sets targets that take effect as the cluster allows (cold starts, drains), ``advance`` lets
    ``seconds`` pass (simulated or waited) and reports the interval.
    """

    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        """Start an episode and report the cluster's initial state."""
        ...

    def apply(self, action: ClusterAction) -> None:
        """Set targets for replica counts and batch knobs."""
        ...

    def advance(self, seconds: float) -> MetricsSnapshot:
        """Let ``seconds`` pass and report the interval."""
        ...

    def close(self) -> None:
        """Release resources; the backend is unusable afterwards."""
        ...


@runtime_checkable
class PeriodHistory(Protocol):
    """A backend that can tell what its tenants' traffic did before it was reset: a live cluster whose metrics
    store keeps the gateway's counters. The controller replays it when it joins an SLO period under way
    (``controller.slo_period_start``), so each tenant's miss budget, arrival trend and peak start where the
    period stands rather than afresh."""

    def period_so_far(self, seconds: float, interval_s: float) -> list[MetricsSnapshot]:
        """The last ``seconds`` (cluster seconds) up to now as consecutive intervals of about ``interval_s``,
        oldest first, each with its tenants' gateway counters (``env.metrics.HISTORY_COUNTERS``; the rest may
        be empty). A tenant the store lacks one of the ``JUDGED_COUNTERS`` of is absent from an interval;
        raises like a scrape does."""
        ...


@runtime_checkable
class Actuator(Protocol):
    """What turns a shielded :class:`ClusterAction` into a change of a cluster (Kubernetes, local processes,
    a backend's own ``apply``, or a dry run). It applies targets, not deltas.

    An actuator raises an ``env.errors`` retryable error for what may pass (the caller retries with
    backoff) and a permanent one for what will not.
    """

    def apply(self, action: ClusterAction) -> None:
        """Set the targets of ``action``; raise on failure."""
        ...
