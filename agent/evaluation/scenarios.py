"""The scenarios an evaluation runs: resolved from names, paths or inline configs, shortened, or trace-driven.

A scenario's requests can come from a trace file given on the command line (``trace.path=...``): the trace
replaces the arrivals and lengths of one tenant (the scenario's first, or ``trace.tenant``), while the
tenant's SLOs, weights and the rest of the scenario stay as configured.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.scenario import ScenarioConfig, load_scenario
from disaggpilot.env.trace import TRACE_FORMATS, load_trace
from disaggpilot.env.workload import TraceSpec

ScenarioEntry = ScenarioConfig | str | Path | Mapping[str, Any]
"""A scenario as configs name it: a ``configs/scenario/`` name, a YAML path, a mapping, or the dataclass."""


@dataclass
class TraceOverride:
    """``trace.*`` of ``configs/evaluate.yaml``: replay a trace for one tenant of every scenario."""

    path: str | None = None
    """Trace CSV (native or Azure format); null evaluates the scenarios as configured."""
    format: str = "auto"
    """``native``, ``azure`` or ``auto`` (from the header)."""
    tenant: str | None = None
    """The tenant whose arrivals and lengths the trace replaces; null: the scenario's first tenant."""
    rate_multiplier: float = 1.0
    """Compress trace time by this factor (2 doubles the arrival rate)."""
    start_s: float = 0.0
    """Window start (seconds of trace time from its first request)."""
    end_s: float | None = None
    """Window end (seconds of trace time); null replays up to the episode's end."""
    tenant_column_value: str | None = None
    """Native format only: replay the rows with this ``tenant`` label (default: the tenant's name)."""

    def __post_init__(self) -> None:
        require(self.format in TRACE_FORMATS, "trace.format", self.format, f"use one of {list(TRACE_FORMATS)}")

    @property
    def enabled(self) -> bool:
        """Whether a trace is given."""
        return bool(self.path)

    def spec(self) -> TraceSpec:
        """The tenant's ``TraceSpec``; raises ``ConfigError`` naming ``trace.<field>`` when a value is bad."""
        try:
            return TraceSpec(path=str(self.path), format=self.format, rate_multiplier=self.rate_multiplier,
                             start_s=self.start_s, end_s=math.inf if self.end_s is None else self.end_s,
                             tenant_column_value=self.tenant_column_value)
        except ConfigError as error:
            raise ConfigError(f"trace.{error}") from None


def resolve_scenario(entry: ScenarioEntry) -> ScenarioConfig:
    """A validated scenario from a name in ``configs/scenario/``, a YAML path, a mapping or a dataclass.

    Raises:
        ConfigError: no such scenario (the message names it and lists the available ones), or a bad field.
    """
    if isinstance(entry, ScenarioConfig):
        return copy.deepcopy(entry)
    if isinstance(entry, Mapping):
        return ScenarioConfig.from_dict({str(key): value for key, value in entry.items() if key != "defaults"})
    return load_scenario(entry)


def with_duration(scenario: ScenarioConfig, duration_s: float | None) -> ScenarioConfig:
    """``scenario`` cut to ``duration_s`` simulated seconds (requests are generated for that long only)."""
    if duration_s is None:
        return scenario
    require(duration_s > 0, "duration_s", duration_s, "use a positive episode length in seconds, or null")
    shortened = copy.deepcopy(scenario)
    shortened.duration_s = float(duration_s)
    return shortened


def with_trace(scenario: ScenarioConfig, trace: TraceOverride) -> ScenarioConfig:
    """``scenario`` with ``trace`` replacing one tenant's arrivals and lengths (a no-op without a path).

    The scenario is renamed ``<name>+<trace file stem>`` so results never mix it with the synthetic one.

    Raises:
        ConfigError: ``trace.tenant`` names no tenant of the scenario, or a trace setting is invalid.
        TraceError: the trace file is missing or malformed.
    """
    if not trace.enabled:
        return scenario
    names = [tenant.name for tenant in scenario.tenants]
    target = trace.tenant if trace.tenant is not None else names[0]
    if target not in names:
        raise ConfigError(f"trace.tenant={target!r} is not a tenant of scenario {scenario.name!r}: use one of {names}")
    spec = trace.spec()
    load_trace(spec.path, spec.format)  # fail here, naming the file, rather than inside a worker
    replayed = copy.deepcopy(scenario)
    replayed.tenants[names.index(target)].trace = spec
    replayed.name = f"{scenario.name}+{Path(spec.path).stem}"
    return replayed


def resolve_scenarios(entries: Sequence[ScenarioEntry], duration_s: float | None = None,
                      trace: TraceOverride | None = None) -> list[ScenarioConfig]:
    """Every scenario of ``entries``, shortened and trace-driven as asked; names must be unique.

    Raises:
        ConfigError: an entry is unknown or invalid, the list is empty, or two scenarios share a name.
    """
    require(len(entries) > 0, "scenarios", list(entries), "list at least one scenario")
    scenarios = [with_trace(with_duration(resolve_scenario(entry), duration_s), trace or TraceOverride())
                 for entry in entries]
    names = [scenario.name for scenario in scenarios]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    require(not duplicates, "scenarios", names, f"give scenarios unique `name`s (repeated: {duplicates})")
    return scenarios


def file_label(name: str) -> str:
    """``name`` made safe for a file name: anything but letters, digits, ``_ . + -`` becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name)
