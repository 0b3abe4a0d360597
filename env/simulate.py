"""``disaggpilot simulate``: run a scenario on the simulator with a fixed configuration, print the table.

A Hydra app over ``configs/simulate.yaml``; any scenario field can be overridden on the command line, e.g.
``disaggpilot simulate scenario=steady scenario.cluster.decode.replicas=4 seed=3``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.config_store import SCHEMA_GROUP, register_configs
from disaggpilot.env.errors import ConfigError, PermanentError, require_seconds, require_seed
from disaggpilot.env.metrics import KV_USAGE, RUNNING, WAITING, MetricsSnapshot
from disaggpilot.env.runlog import log_resolved_config
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.structured import defaults_node
from disaggpilot.env.summary import RunSummary, summarize

log = logging.getLogger("disaggpilot.simulate")


@dataclass
class SimulateSettings:
    """The run settings of ``configs/simulate.yaml`` besides the scenario, validated at construction."""

    scenario: ScenarioConfig
    """What is simulated (``scenario=<name>`` and ``scenario.*`` overrides)."""
    seed: int = 0
    """Seed of the episode's requests (an integer >= 0)."""
    duration_s: float | None = None
    """Simulated time to run (seconds); None runs the scenario's ``duration_s``."""
    interval_s: float = 30.0
    """Time between snapshots (seconds)."""

    def __post_init__(self) -> None:
        self.seed = require_seed("seed", self.seed)
        self.duration_s = require_seconds("duration_s", self.duration_s, optional=True,
                                          fix="use a positive number of seconds, or null for scenario.duration_s")
        self.interval_s = float(require_seconds("interval_s", self.interval_s) or 0.0)

    @property
    def run_s(self) -> float:
        """Simulated seconds to run: ``duration_s``, else the scenario's."""
        return self.duration_s if self.duration_s is not None else self.scenario.duration_s

    @classmethod
    def from_config(cls, cfg: DictConfig) -> SimulateSettings:
        """The settings of a composed ``configs/simulate.yaml``."""
        return cls(scenario_from_config(cfg.scenario), cfg.seed, cfg.duration_s, cfg.interval_s)


def scenario_from_config(node: Any) -> ScenarioConfig:
    """A validated ``ScenarioConfig`` from a Hydra/OmegaConf node or a plain dict."""
    raw = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(raw, dict):
        raise ConfigError(f"scenario={raw!r} is not a mapping: pick one with scenario=<name> from configs/scenario/")
    return ScenarioConfig.from_dict({str(key): value for key, value in raw.items()})


def run_simulation(scenario: ScenarioConfig, seed: int, duration_s: float, interval_s: float
                   ) -> tuple[list[MetricsSnapshot], float]:
    """Simulate ``duration_s`` in steps of ``interval_s``; returns the snapshots and the wall time (s)."""
    backend = SimBackend(scenario)
    started = time.perf_counter()
    backend.reset(seed)
    snapshots, elapsed = [], 0.0
    while elapsed < duration_s - 1e-9:
        step = min(interval_s, duration_s - elapsed)
        snapshots.append(backend.advance(step))
        elapsed += step
    backend.close()
    return snapshots, time.perf_counter() - started


def timeline_row(snapshot: MetricsSnapshot) -> dict[str, Any]:
    """One interval as a flat record: time, cost, per-tenant attainment, per-pool replicas and gauges."""
    row: dict[str, Any] = {"end_s": snapshot.end_s, "cost_usd": snapshot.cost_usd}
    for name, tenant in snapshot.tenants.items():
        row[f"slo/{name}/attainment"] = tenant.attainment()
    for role, pool in snapshot.pools.items():
        row[f"pool/{role}/replicas_ready"] = pool.replicas_ready
        row[f"pool/{role}/running"] = pool.gauges[RUNNING]
        row[f"pool/{role}/waiting"] = pool.gauges[WAITING]
        row[f"pool/{role}/kv_usage"] = pool.gauges[KV_USAGE]
    return row


def write_outputs(directory: Path, summary: RunSummary, snapshots: list[MetricsSnapshot], cfg: DictConfig) -> Path:
    """Write the summary JSON (and the timeline when asked) into ``directory``; returns the summary path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / str(cfg.output_json)
    path.write_text(json.dumps(summary.to_dict(), indent=2, allow_nan=True))
    if cfg.write_timeline:
        lines = (json.dumps(timeline_row(s), allow_nan=True) for s in snapshots)
        (directory / "timeline.jsonl").write_text("\n".join(lines) + "\n")
    return path


def register_simulate_configs() -> None:
    """Store :class:`SimulateSettings`' defaults (the scenario aside) as ``/schema/simulate``, the start of
    ``configs/simulate.yaml``, and the environment's schemas (the scenario yamls name ``ScenarioConfig``'s)."""
    register_configs()
    ConfigStore.instance().store(group=SCHEMA_GROUP, name="simulate", node=defaults_node(SimulateSettings))


register_simulate_configs()  # before Hydra composes


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="simulate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``disaggpilot simulate``."""
    try:  # settings first: a bad input is named before anything else is printed
        settings = SimulateSettings.from_config(cfg)
        log_resolved_config("simulate", cfg)
        scenario, duration = settings.scenario, settings.run_s
        snapshots, wall = run_simulation(scenario, settings.seed, duration, settings.interval_s)
    except PermanentError as error:  # bad settings or a bad trace: say which, without a traceback
        raise SystemExit(f"disaggpilot simulate: {error}") from None
    summary = summarize(snapshots, scenario.tenants)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    path = write_outputs(output_dir, summary, snapshots, cfg)
    print(f"scenario {scenario.name} (seed {cfg.seed}): {duration:.0f} simulated s in {wall:.2f} wall s")
    print(summary.table())
    print(f"summary written to {path}")
