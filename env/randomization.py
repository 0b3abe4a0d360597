"""Domain randomisation: per-episode perturbations of a scenario, sampled from the episode's seed.

A policy trained on one exact world overfits it; these ranges make it hold across loads, prompt lengths,
cold starts, prices, transfer bandwidths and tenant mixes. Each range is ``[low, high]``; ``[1, 1]`` (the
default) disables it. Multipliers are sampled log-uniformly, so ``[0.5, 2]`` is symmetric around 1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from disaggpilot.env.errors import check_types, require
from disaggpilot.env.scenario import ScenarioConfig


@dataclass
class RandomizationConfig:
    """Ranges of per-episode multipliers."""

    load_multiplier: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Factor on every tenant's arrival rate."""
    length_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Factor on sampled prompt and output lengths (a shift of the length distributions)."""
    cold_start_multiplier: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Factor on the replica cold-start time."""
    price_multiplier: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Factor on USD per GPU-hour."""
    kv_bandwidth_multiplier: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Factor on the KV-transfer link bandwidth."""
    tenant_mix: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Independent factor on each tenant's arrival rate (changes who dominates the load)."""

    def __post_init__(self) -> None:
        check_types(self, "env.randomization")
        for key in ("load_multiplier", "length_scale", "cold_start_multiplier", "price_multiplier",
                    "kv_bandwidth_multiplier", "tenant_mix"):
            bounds = [float(v) for v in getattr(self, key)]
            require(len(bounds) == 2 and 0 < bounds[0] <= bounds[1], f"env.randomization.{key}", bounds,
                    "give [low, high] with 0 < low <= high ([1, 1] turns it off)")
            setattr(self, key, bounds)

    @property
    def enabled(self) -> bool:
        """Whether any range is wider than a point."""
        return any(low != high or low != 1.0 for low, high in self._ranges().values())

    def _ranges(self) -> dict[str, list[float]]:
        return {key: getattr(self, key) for key in ("load_multiplier", "length_scale", "cold_start_multiplier",
                                                   "price_multiplier", "kv_bandwidth_multiplier", "tenant_mix")}


def _log_uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    low, high = bounds
    return low if low == high else float(math.exp(rng.uniform(math.log(low), math.log(high))))


def randomize(scenario: ScenarioConfig, config: RandomizationConfig, rng: np.random.Generator,
              default_price: float, default_link_gbps: float) -> tuple[ScenarioConfig, dict[str, float]]:
    """A perturbed copy of ``scenario`` and the factors drawn (for ``info``). The input is not modified."""
    factors = {key: _log_uniform(rng, bounds) for key, bounds in config._ranges().items() if key != "tenant_mix"}
    world = copy.deepcopy(scenario)
    for tenant in world.tenants:
        mix = _log_uniform(rng, config.tenant_mix)
        factors[f"tenant_mix/{tenant.name}"] = mix
        tenant.arrival.rate_rps *= factors["load_multiplier"] * mix
        tenant.lengths.scale *= factors["length_scale"]
        if tenant.trace is not None:
            tenant.trace.rate_multiplier *= factors["load_multiplier"] * mix
    cluster = world.cluster
    cluster.cold_start_s *= factors["cold_start_multiplier"]
    cluster.usd_per_gpu_hour = (cluster.usd_per_gpu_hour or default_price) * factors["price_multiplier"]
    cluster.kv_link_gbps = (cluster.kv_link_gbps or default_link_gbps) * factors["kv_bandwidth_multiplier"]
    return world, factors
