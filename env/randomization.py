"""Domain randomisation: per-episode perturbations of a scenario, sampled from the episode's seed.

A policy trained on one exact world overfits it; these ranges make it hold across loads, prompt lengths,
cold starts, prices, transfer bandwidths and tenant mixes. Each range is ``[low, high]``; ``[1, 1]`` (the
default) disables it. Multipliers are sampled log-uniformly, so ``[0.5, 2]`` is symmetric around 1.

The simulator's own uncertainty can be drawn too: a step-time model per episode (``perf_models``) and the age
of the router's load figures (``routing_staleness_s``). With all issue 22's models on, the shipped policy's
margins do not survive (docs/experiments/2026-12-07-fidelity-models.md): a policy meant for real clusters has
to hold across the model error, not at one point of it. These two are drawn after every other factor, so
turning them on leaves the other draws of a seed unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from disaggpilot.env.errors import check_types, require
from disaggpilot.env.perf_tp import PERF_MODELS
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
    perf_models: list[str] = field(default_factory=list)
    """Step-time models to draw one from per episode, uniformly (names of ``scenario.perf_model``); empty keeps
    the scenario's."""
    routing_staleness_s: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """Range of the router's scrape age drawn uniformly per episode (seconds; ``cluster.routing_staleness_s``);
    ``[0, 0]`` keeps the scenario's."""
    burst_shift_s: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """Range of one shift drawn uniformly per episode and added to the start of every tenant's scripted rate
    change (seconds; a start never goes below 0). A burst whose time varies keeps a learned policy from keying
    its reaction to the clock instead of to what it measures. ``[0, 0]`` keeps the scenario's times."""

    def __post_init__(self) -> None:
        check_types(self, "env.randomization")
        for key in ("load_multiplier", "length_scale", "cold_start_multiplier", "price_multiplier",
                    "kv_bandwidth_multiplier", "tenant_mix"):
            bounds = [float(v) for v in getattr(self, key)]
            require(len(bounds) == 2 and 0 < bounds[0] <= bounds[1], f"env.randomization.{key}", bounds,
                    "give [low, high] with 0 < low <= high ([1, 1] turns it off)")
            setattr(self, key, bounds)
        self.perf_models = [str(name) for name in self.perf_models]
        for name in self.perf_models:
            require(name in PERF_MODELS, "env.randomization.perf_models", name, f"use names among {list(PERF_MODELS)}")
        staleness = [float(v) for v in self.routing_staleness_s]
        require(len(staleness) == 2 and 0 <= staleness[0] <= staleness[1], "env.randomization.routing_staleness_s",
                staleness, "give [low, high] seconds with 0 <= low <= high ([0, 0] turns it off)")
        self.routing_staleness_s = staleness
        shift = [float(v) for v in self.burst_shift_s]
        require(len(shift) == 2 and shift[0] <= shift[1], "env.randomization.burst_shift_s", shift,
                "give [low, high] seconds with low <= high ([0, 0] turns it off)")
        self.burst_shift_s = shift

    @property
    def enabled(self) -> bool:
        """Whether any range is wider than a point, or a model, a staleness or a bursts' shift is drawn."""
        return (any(low != high or low != 1.0 for low, high in self._ranges().values()) or bool(self.perf_models)
                or self.routing_staleness_s != [0.0, 0.0] or self.burst_shift_s != [0.0, 0.0])

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
    _draw_simulator_models(world, config, rng, factors)
    return world, factors


def _draw_simulator_models(world: ScenarioConfig, config: RandomizationConfig, rng: np.random.Generator,
                           factors: dict[str, float]) -> None:
    """Draw the step-time model, the routing staleness and the bursts' shift into ``world`` when configured
    (nothing is drawn otherwise, so the seed's other draws stay as they were)."""
    if config.perf_models:
        index = int(rng.integers(len(config.perf_models)))
        world.perf_model = config.perf_models[index]
        factors["perf_model"] = float(PERF_MODELS.index(world.perf_model))
    if config.routing_staleness_s != [0.0, 0.0]:
        low, high = config.routing_staleness_s
        world.cluster.routing_staleness_s = float(rng.uniform(low, high))
        factors["routing_staleness_s"] = world.cluster.routing_staleness_s
    if config.burst_shift_s != [0.0, 0.0]:
        factors["burst_shift_s"] = _shift_bursts(world, config.burst_shift_s, rng)


def _shift_bursts(world: ScenarioConfig, bounds: list[float], rng: np.random.Generator) -> float:
    """Move every tenant's scripted rate changes by one uniform draw from ``bounds`` (never before 0); the draw."""
    low, high = bounds
    shift = float(rng.uniform(low, high))
    for tenant in world.tenants:
        for change in tenant.arrival.changes:
            change.start_s = max(0.0, change.start_s + shift)
    return shift
