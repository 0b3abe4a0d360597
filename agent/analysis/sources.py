"""Where an analysis's inputs come from: repository paths, the shipped bundle, and policy configs.

Notebooks run from ``notebooks/`` in Jupyter and from a temporary directory in CI, so every path they are
given is resolved the same way: absolute as is, else relative to the current directory when it exists
there, else relative to the repository root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from disaggpilot.agent.errors import AgentError, PermanentError
from disaggpilot.env.catalog import SHIPPED_BUNDLE, configs_dir
from disaggpilot.env.trace import repo_root


class AnalysisError(AgentError, PermanentError, ValueError):
    """An analysis input is missing or unusable; the message names it and says what to give instead."""


def resolve_path(path: str | Path) -> Path:
    """``path`` as an absolute path: absolute as is; relative to the current directory when something is
    there; else relative to the repository root (which need not exist: callers check)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    here = Path.cwd() / candidate
    return here.resolve() if here.exists() else (repo_root() / candidate).resolve()


def shipped_bundle() -> Path:
    """The shipped policy bundle's directory (:data:`env.catalog.SHIPPED_BUNDLE`, under the repository root)."""
    return repo_root() / SHIPPED_BUNDLE


def policy_config(name: str) -> dict[str, Any]:
    """The policy config ``configs/policy/<name>.yaml`` as a plain dict (``kind``, settings, harness keys).

    Raises:
        AnalysisError: no such config; the message lists the available ones.
    """
    path = configs_dir() / "policy" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise AnalysisError(f"policy {name!r}: no config {path}; use one of {available}")
    stated = OmegaConf.load(path)
    # the file states only what differs from its kind's schema (agent/config_store.py)
    if isinstance(stated, DictConfig) and "defaults" in stated:
        from disaggpilot.agent.config_store import policy_defaults

        del stated["defaults"]
        stated = OmegaConf.merge(policy_defaults(str(stated.kind)), stated)
    raw = OmegaConf.to_container(stated, resolve=True)
    assert isinstance(raw, dict)
    return {str(key): value for key, value in raw.items()}


def bundle_config(path: str | Path) -> dict[str, Any]:
    """The ``ppo`` policy config of the bundle at ``path`` (resolved with :func:`resolve_path`).

    Raises:
        AnalysisError: ``path`` is not a directory.
    """
    directory = resolve_path(path)
    if not directory.is_dir():
        raise AnalysisError(f"bundle {str(path)!r}: no directory {directory}; give a bundle directory written by "
                            f"`disaggpilot train` (its bundle/ folder), e.g. {SHIPPED_BUNDLE}")
    return {**policy_config("ppo"), "bundle": str(directory)}


def policy_set(baselines: Sequence[str], bundles: Mapping[str, str | Path] | None = None) -> dict[str, dict[str, Any]]:
    """Policy configs for ``EvaluationPlan.policies``: the named baselines (``configs/policy/<name>.yaml``),
    then one ``ppo`` policy per bundle, keyed by the name given to it.

    Args:
        baselines: names of baseline configs, e.g. ``["static", "threshold"]``.
        bundles: policy name → bundle directory, e.g. ``{"ppo": SHIPPED_BUNDLE}``.

    Raises:
        AnalysisError: an unknown baseline, a missing bundle directory, or a name used twice.
    """
    configs = {name: policy_config(name) for name in baselines}
    for name, path in (bundles or {}).items():
        if name in configs:
            raise AnalysisError(f"bundles.{name}: the name is already a baseline's; name the bundle differently")
        configs[name] = bundle_config(path)
    if not configs:
        raise AnalysisError("no policies: give at least one baseline name or bundle")
    return configs


def output_directory(path: str | Path) -> Path:
    """``path`` resolved (relative paths under the repository root unless they exist here), created."""
    directory = resolve_path(path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory
