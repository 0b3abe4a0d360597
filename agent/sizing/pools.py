"""A pool's replica count as a sizer reads and bounds it: what it asks for now, and a count within its limits."""

from __future__ import annotations

from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.metrics import MetricsSnapshot


def current_replicas(snapshot: MetricsSnapshot, role: str) -> int:
    """Replicas currently asked for in ``role`` (ready plus starting); 0 when the pool is absent."""
    pool = snapshot.pools.get(role)
    return pool.replicas_ready + pool.replicas_starting if pool is not None else 0


def bounded(cluster: ClusterConfig, role: str, count: int) -> int:
    """``count`` clipped to the pool's ``min_replicas..max_replicas``."""
    pool = getattr(cluster, role)
    return max(pool.min_replicas, min(pool.max_replicas, int(count)))

