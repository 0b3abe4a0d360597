"""One factory for every policy the evaluation runs: ``build_policy(name, cfg)`` dispatches on ``kind``.

A policy's config (``configs/policy/<name>.yaml``) holds ``kind`` plus the policy's own settings, and two
keys the harness reads itself:

- ``sees_future`` (default false): the policy is a reference that sees the future and is given the episode's true
  requests in ``PolicyContext.requests``. Every other policy gets ``None`` there.
- ``kind``: a baseline registered in ``agent.baselines.BASELINES``, or ``ppo`` (a trained bundle, issue 5:
  ``bundle: <directory>`` plus ``agent.ppo_policy.PpoPolicy``'s settings).

A new kind plugs in by adding an entry to :data:`POLICY_KINDS` (a function of the policy's name and its
settings that returns a :class:`agent.policy.Policy`); baselines need nothing here, since every key of
``agent.baselines.BASELINES`` is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.policy import Policy
from disaggpilot.env.errors import ConfigError

HARNESS_KEYS: tuple[str, ...] = ("kind", "sees_future")
"""Keys of a policy config read by the harness and not passed to the policy."""

PolicyFactory = Callable[[str, dict[str, Any]], Policy]
"""Builds a policy from its config name and its settings (the config without the harness keys)."""


@dataclass(frozen=True)
class PolicySpec:
    """A policy's config, split into what the harness reads and what the policy takes.

    Attributes:
        name: the policy's key in ``policies`` (its label in every result).
        kind: which factory builds it (a baseline kind, or ``ppo``).
        params: the policy's own settings, passed as keyword arguments.
        sees_future: whether the harness gives it the episode's true requests.
    """

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    sees_future: bool = False

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any] | DictConfig) -> PolicySpec:
        """Parse ``policies.<name>``; raises :class:`PolicyConfigError` naming the key when malformed."""
        raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        if not isinstance(raw, dict):
            raise PolicyConfigError(f"policies.{name}={raw!r} is not a mapping: give `kind:` and the policy's "
                                    "settings")
        kind = raw.get("kind")
        if not isinstance(kind, str) or not kind:
            raise PolicyConfigError(f"policies.{name}.kind={kind!r} is invalid: name a policy kind, one of "
                              f"{known_kinds()}")
        sees_future = raw.get("sees_future", False)
        if not isinstance(sees_future, bool):
            raise PolicyConfigError(f"policies.{name}.sees_future={sees_future!r} is invalid: use true or false")
        params = {str(key): value for key, value in raw.items() if key not in HARNESS_KEYS}
        missing = [key for key, value in params.items() if value == "???"]
        if missing:
            raise PolicyConfigError(f"policies.{name}.{missing[0]} is required: set it on the command line, "
                                    f"e.g. policies.{name}.{missing[0]}=<value>")
        return cls(name=name, kind=kind, params=params, sees_future=sees_future)


def _baseline(kind: str) -> PolicyFactory:
    def build(name: str, params: dict[str, Any]) -> Policy:
        from disaggpilot.agent.baselines import make_baseline

        try:
            return make_baseline(kind, **params)
        except ConfigError as error:
            raise PolicyConfigError(f"policies.{name} (kind {kind!r}): {error}") from None
    return build


def _ppo(name: str, params: dict[str, Any]) -> Policy:
    """A trained bundle (issue 5): ``agent.ppo_policy.PpoPolicy(bundle=..., ...)`` once it exists."""
    try:
        from disaggpilot.agent.ppo_policy import PpoPolicy
    except ModuleNotFoundError as error:
        if error.name not in ("disaggpilot.agent.ppo_policy", "disaggpilot.agent.bundle"):
            raise
        raise PolicyConfigError(f"policies.{name}: kind 'ppo' needs agent.bundle (issue 5)") from None
    try:
        policy: Policy = PpoPolicy(**{"name": name, **params})
    except TypeError as error:
        raise PolicyConfigError(f"policies.{name} (kind 'ppo'): {error}; give `bundle:` (a bundle directory) "
                                "and the PpoPolicy settings") from None
    return policy


POLICY_KINDS: dict[str, PolicyFactory] = {
    "ppo": _ppo,
}
"""Non-baseline kinds and their factories. Baseline kinds come from ``agent.baselines.BASELINES``."""


def baseline_kinds() -> list[str]:
    """The kinds registered in ``agent.baselines`` (imported lazily: the registry may import heavy code)."""
    from disaggpilot.agent.baselines import BASELINES

    return sorted(BASELINES)


def known_kinds() -> list[str]:
    """Every kind :func:`build_policy` accepts."""
    return sorted({*baseline_kinds(), *POLICY_KINDS})


def factory_for(name: str, kind: str) -> PolicyFactory:
    """The factory of ``kind``; raises :class:`PolicyConfigError` naming the policy and known kinds."""
    if kind in POLICY_KINDS:
        return POLICY_KINDS[kind]
    if kind in baseline_kinds():
        return _baseline(kind)
    raise PolicyConfigError(f"policies.{name}.kind={kind!r} is unknown: use one of {known_kinds()}")


def build_policy(name: str, cfg: Mapping[str, Any] | DictConfig | PolicySpec) -> Policy:
    """Build the policy configured as ``policies.<name>``.

    Args:
        name: the policy's config name (its label in results).
        cfg: its config: ``kind`` plus settings (``sees_future`` is read by the harness, not passed on).

    Raises:
        PolicyConfigError: the kind is unknown, or the policy rejects a setting (names ``policies.<name>``).
    """
    spec = cfg if isinstance(cfg, PolicySpec) else PolicySpec.from_config(name, cfg)
    return factory_for(name, spec.kind)(name, dict(spec.params))
