"""A scenario: model, hardware, tenants and cluster, everything a simulation run needs besides its seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.perf_tp import PERF_MODELS
from disaggpilot.env.structured import build
from disaggpilot.env.workload import TenantSpec, tenants_from_config


@dataclass
class ScenarioConfig:
    """What is served, on what, for whom. Documented instances live in ``configs/scenario/``."""

    name: str = "default"
    """Scenario name, used in result tables."""
    description: str = ""
    """What the scenario stresses."""
    model: str = "llama-3.1-70b"
    """Model catalog name (``configs/model/<name>.yaml``) or a path to a Hugging Face ``config.json``."""
    hardware: str = "h100-sxm"
    """GPU catalog name (``configs/hardware/<name>.yaml``)."""
    weight_dtype: str = "bf16"
    """Weight precision (``bf16``, ``fp8``)."""
    kv_dtype: str = "bf16"
    """KV-cache precision (``bf16``, ``fp8``)."""
    perf_model: str = "roofline"
    """Step-time model: ``roofline`` (``env.perf``, the shipped calibration) or ``tp-comm`` (``env.perf_tp``:
    all-reduces, overlap and attention as their own terms; issue 22). Evaluation tables use ``roofline``."""
    duration_s: float = 7200.0
    """Length of an episode (seconds)."""
    tenants: list[TenantSpec] = field(default_factory=lambda: [TenantSpec()])
    """Who sends requests."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """The serving cluster."""

    def __post_init__(self) -> None:
        self.tenants = tenants_from_config(self.tenants)
        require(self.perf_model in PERF_MODELS, "scenario.perf_model", self.perf_model,
                f"use one of {list(PERF_MODELS)}")
        require(self.duration_s > 0, "scenario.duration_s", self.duration_s, "use a positive duration in seconds")
        require(len(self.tenants) >= 1, "scenario.tenants", self.tenants, "give at least one tenant")
        names = [t.name for t in self.tenants]
        require(len(set(names)) == len(names), "scenario.tenants[].name", names, "give tenants unique names")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScenarioConfig:
        """Build from a plain dict (a resolved Hydra/OmegaConf container): OmegaConf types it against this
        schema and builds the nested settings (``OmegaConf.to_object``), each validating itself."""
        return build(cls, raw)


def load_scenario(name_or_path: str | Path) -> ScenarioConfig:
    """A scenario from ``configs/scenario/<name>.yaml`` or a YAML path, validated.

    Hydra's ``defaults`` list in the file (its structured-config schema) is not needed here and is dropped.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / "scenario" / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (configs_dir() / "scenario").glob("*.yaml"))
        raise ConfigError(f"scenario={name_or_path!r}: no file {path}; available: {available}")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a scenario file must hold a mapping of ScenarioConfig fields")
    raw.pop("defaults", None)
    return ScenarioConfig.from_dict({str(key): value for key, value in raw.items()})
