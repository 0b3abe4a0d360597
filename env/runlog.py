"""Records for the run directory's log only: the resolved config and per-item detail of every Hydra app.

``configs/hydra/job_logging/disaggpilot.yaml`` (selected by every app) routes the loggers under
:data:`RUNLOG` to the file handler alone (``<run dir>/<app>.log``), so a run stays reproducible from its
log while the terminal shows only progress, status and results. Run outside Hydra (a notebook, a test),
these loggers propagate to the root logger like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

RUNLOG = "disaggpilot.runlog"
"""Parent of the loggers whose records go to the run's log file only."""

REDACTED = "<redacted>"
"""What a secret's value is replaced with in the logged config."""


def runlog(name: str) -> logging.Logger:
    """The file-only logger ``disaggpilot.runlog.<name>``."""
    return logging.getLogger(f"{RUNLOG}.{name}")


def resolved_config(cfg: DictConfig, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """``cfg`` as plain data, resolved, with the values under each top-level key in ``secrets`` redacted first
    (so a secret's interpolation, e.g. ``${oc.env:KEY}``, is never even read). A config that does not resolve
    (a missing environment variable) is returned unresolved: the app reports that error itself, by name."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    for key in secrets:
        value = plain.get(key)
        if isinstance(value, dict):
            plain[key] = {name: REDACTED for name in value}
        elif value is not None:
            plain[key] = REDACTED
    try:
        resolved = OmegaConf.to_container(OmegaConf.create(plain), resolve=True)
    except OmegaConfBaseException:
        resolved = plain
    assert isinstance(resolved, dict)
    return {str(key): value for key, value in resolved.items()}


def log_resolved_config(app: str, cfg: DictConfig, secrets: Iterable[str] = ()) -> None:
    """Write ``cfg``, resolved, to the run's log file (never the terminal) as ``resolved config:`` + YAML.

    Args:
        app: the app's name (the logger is ``disaggpilot.runlog.<app>``).
        cfg: the composed config.
        secrets: top-level keys whose values must not be written (API keys).
    """
    plain = resolved_config(cfg, secrets)
    runlog(app).info("resolved config:\n%s", OmegaConf.to_yaml(plain))
