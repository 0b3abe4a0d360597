"""Helpers shared by the baseline controllers: settings construction, pool lookups and target building."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from disaggpilot.agent.errors import AgentError, PermanentError
from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import ConfigError

SCALED_ROLES: tuple[str, ...] = ("prefill", "decode", "aggregated")
SettingsT = TypeVar("SettingsT")


class BaselineError(AgentError, PermanentError, RuntimeError):
    """A baseline was used out of order (``act`` before ``reset``) or without what it needs."""


def build_settings(kind: type[SettingsT], params: Mapping[str, Any], policy: str) -> SettingsT:
    """Build the settings dataclass ``kind`` from ``params``, naming unknown keys and the known ones.

    Args:
        kind: a settings dataclass (it validates itself in ``__post_init__``).
        params: keyword settings, for example a resolved Hydra config section.
        policy: the policy's registry name, used in messages.

    Raises:
        ConfigError: a key is not a field of ``kind``, or a value is out of range.
    """
    names = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(f"agent.{policy}: unknown setting(s) {unknown}; use some of {names}")
    return kind(**params)


def enabled_roles(cluster: ClusterConfig) -> tuple[str, ...]:
    """The scaled pool roles the cluster enables, in a fixed order."""
    return tuple(role for role in SCALED_ROLES if getattr(cluster, role).enabled)


def make_action(replicas: Mapping[str, int], budget: int | None = None, cap: int | None = None) -> ClusterAction:
    """Targets for the given pools, with the knobs set the way the environment's action codec sets them.

    Args:
        replicas: target replica count per pool role.
        budget: prefill token budget (tokens per iteration) for the prefill and aggregated pools; None keeps it.
        cap: batch cap (sequences per replica) for the decode and aggregated pools; None keeps it.
    """
    return ClusterAction({
        role: PoolTarget(replicas=count,
                         max_num_batched_tokens=budget if role != "decode" else None,
                         max_num_seqs=cap if role != "prefill" else None)
        for role, count in replicas.items()})

