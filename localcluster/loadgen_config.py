"""Settings of the load generator (``disaggpilot loadgen``), and the workload of the scenario it replays."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disaggpilot.env.errors import require
from disaggpilot.env.scenario import ScenarioConfig, load_scenario
from disaggpilot.env.workload import TenantSpec

ENDPOINTS: tuple[str, ...] = ("completions", "chat")
"""Values of ``LoadgenConfig.endpoint``."""


@dataclass
class LoadgenConfig:
    """How to replay a scenario against an OpenAI-compatible endpoint."""

    url: str = ""
    """Base URL of the endpoint (the gateway), e.g. ``http://127.0.0.1:8000``."""
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    """API key per tenant name (sent as ``Authorization: Bearer``); a tenant without one sends none."""
    model: str = "llama-3.1-70b"
    """The ``model`` field of every request (the served model name)."""
    seed: int = 0
    """Seed of the workload: the same seed gives the simulator's request sequence for the scenario."""
    duration_s: float = 0.0
    """Scenario seconds to replay from its start; 0 replays the scenario's whole ``duration_s`` (seconds)."""
    time_scale: float = 1.0
    """Wall seconds per scenario second: 0.1 replays ten times faster, and measured latencies are divided
    by it (match the emulator's ``--time-scale``)."""
    endpoint: str = "completions"
    """``completions`` (``/v1/completions``) or ``chat`` (``/v1/chat/completions``)."""
    trace: str = ""
    """A trace CSV replacing every tenant's arrivals and lengths (native rows are matched by tenant name)."""
    request_timeout_s: float = 600.0
    """Limit on one request, from send to last token (wall seconds); a request past it is lost."""
    max_in_flight: int = 4096
    """Client-side cap on open requests; a request held back by it is late, and its latency shows it."""
    progress: bool = True
    """Show a progress bar (on stderr)."""
    output_json: str = ""
    """Write the per-tenant summary and per-request results to this JSON file; empty: do not."""

    def __post_init__(self) -> None:
        require(isinstance(self.url, str) and self.url.startswith(("http://", "https://")), "url", self.url,
                "give the endpoint's base URL, e.g. url=http://127.0.0.1:8000")
        self.url = self.url.rstrip("/")
        require(isinstance(self.api_keys, Mapping), "api_keys", "<hidden>", "give a mapping tenant -> key")
        self.api_keys = {str(name): str(key) for name, key in self.api_keys.items()}
        require(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "use an integer >= 0")
        require(_number(self.duration_s) and self.duration_s >= 0, "duration_s", self.duration_s,
                "use seconds >= 0 (0: the scenario's duration)")
        require(_number(self.time_scale) and self.time_scale > 0, "time_scale", self.time_scale,
                "use a factor > 0 (1: real time; 0.1: ten times faster)")
        require(self.endpoint in ENDPOINTS, "endpoint", self.endpoint, f"use one of {list(ENDPOINTS)}")
        require(_number(self.request_timeout_s) and self.request_timeout_s > 0, "request_timeout_s",
                self.request_timeout_s, "use seconds > 0")
        require(isinstance(self.max_in_flight, int) and self.max_in_flight >= 1, "max_in_flight",
                self.max_in_flight, "use an integer >= 1 (requests)")


def scenario_workload(scenario: str | Path | Mapping[str, Any]) -> tuple[list[TenantSpec], float]:
    """Tenants and duration (seconds) of a scenario: a name in ``configs/scenario/``, a YAML path, or a
    mapping of its fields (a composed Hydra node), validated as ``ScenarioConfig``."""
    if isinstance(scenario, str | Path):
        config = load_scenario(scenario)
    else:
        fields = {str(key): value for key, value in scenario.items() if key != "defaults"}
        unknown = sorted(set(fields) - set(ScenarioConfig.__dataclass_fields__))
        require(not unknown, "scenario", unknown, f"remove the unknown keys; a scenario knows "
                                                  f"{sorted(ScenarioConfig.__dataclass_fields__)}")
        config = ScenarioConfig.from_dict(fields)
    return list(config.tenants), float(config.duration_s)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
