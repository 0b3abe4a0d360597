"""The cluster's settings, re-exported for the simulator's modules.

They live in :mod:`env.cluster_config` because scenarios, the action codec and the live backend read them
too, and the live backend must not import ``env.sim``.
"""

from disaggpilot.env.cluster_config import ClusterConfig, PoolConfig

__all__ = ["ClusterConfig", "PoolConfig"]
