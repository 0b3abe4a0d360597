"""Settings of the local-cluster rig (``localcluster/rig.py``), and the scenario as its wall clock sees it.

An emulated cluster may run faster than real GPUs (the emulator's ``--time-scale``): with ``time_scale`` 0.1
every GPU duration lasts a tenth as long on the wall clock. Whatever reads the cluster in wall time (the
gateway's SLO judgement, Prometheus, the controller, a live ``DisaggClusterEnv``) must then see a scenario
expressed in wall time too, or it would compare ten-times-shorter latencies with the real objectives and
size replicas with a ten-times-slower performance model. :func:`write_wall_clock_view` writes that scenario:
durations times ``time_scale``, rates divided by it, and a GPU type whose throughputs are divided by it
and overheads multiplied by it, so :class:`env.perf.PerfModel` predicts exactly the emulator's wall
durations (every term of the model is a work / rate or an overhead). The load generator replays the
original scenario with ``time_scale`` and converts its latencies back to GPU seconds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.live.launcher_config import REPLICA_KINDS, LauncherConfig
from disaggpilot.env.metrics import DEFAULT_TPOT_SLO_S, DEFAULT_TTFT_SLO_S

# GPU figures that are rates (divided by the time scale) and calibration figures that are durations
# (multiplied by it); every other figure (memory, efficiencies, GPUs per node) is time-free.
_GPU_RATES = ("peak_bf16_tflops", "hbm_bandwidth_tbps", "intra_node_gbps", "inter_node_gbps")
_GPU_DURATIONS = ("prefill_overhead_s", "decode_overhead_s", "allreduce_latency_s")
_CLUSTER_DURATIONS = ("cold_start_s", "kv_transfer_latency_s", "admission_timeout_s")


@dataclass
class RigConfig:
    """A local cluster for a scenario: replicas, gateway and Prometheus on 127.0.0.1."""

    scenario: str = "steady"
    """Scenario name (``configs/scenario/``) or YAML path: its tenants, model, hardware and initial pools."""
    kind: str = "emulator"
    """Replica kind: ``emulator`` (GPU-timed stand-in) or ``vllm`` (real vLLM, CPU build; set
    ``launcher.vllm.model_dir``)."""
    time_scale: float = 1.0
    """Wall seconds per emulated GPU second (0.1 runs ten times faster); emulator only."""
    own_replicas: bool = True
    """Start the scenario's initial replicas here; False leaves them to a controller run with
    ``controller.actuator=local`` writing the same discovery file."""
    workdir: str = ""
    """Folder for the discovery file, configurations and logs; empty: a temporary one, removed at exit."""
    scrape_interval_s: float = 0.5
    """Prometheus scrape interval of every replica and of the gateway (wall seconds)."""
    tenant_max_concurrency: int = 4096
    """Per-tenant requests in flight at the gateway before 429 (requests); high, so load tests measure the
    cluster, not admission."""
    startup_timeout_s: float = 120.0
    """Longest wait for replicas, gateway and first scrapes at start (wall seconds)."""
    prometheus_binary: str = "/usr/bin/prometheus"
    """The Prometheus server executable (Debian's package)."""
    launcher: LauncherConfig = field(default_factory=lambda: LauncherConfig(kind="emulator"))
    """Launcher settings; ``kind``, ``discovery_path`` and the emulator's model, hardware, tensor-parallel
    degree, cold start and time scale are filled from the scenario and the fields above."""

    def __post_init__(self) -> None:
        require(self.kind in REPLICA_KINDS, "rig.kind", self.kind, f"use one of {REPLICA_KINDS}")
        require(math.isfinite(self.time_scale) and self.time_scale > 0, "rig.time_scale", self.time_scale,
                "use a factor > 0 (1.0 = real GPU time)")
        require(self.kind == "emulator" or self.time_scale == 1.0, "rig.time_scale", self.time_scale,
                "only emulated replicas can run faster than real time: use 1.0 with kind=vllm")
        require(self.scrape_interval_s >= 0.1, "rig.scrape_interval_s", self.scrape_interval_s, "use >= 0.1 s")
        require(self.tenant_max_concurrency >= 1, "rig.tenant_max_concurrency", self.tenant_max_concurrency,
                "use >= 1 request")
        require(self.startup_timeout_s > 0, "rig.startup_timeout_s", self.startup_timeout_s, "use > 0 s")


def scenario_mapping(name_or_path: str | Path) -> dict[str, Any]:
    """A scenario file's fields as plain data (Hydra's ``defaults`` dropped), by name or path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / "scenario" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"rig.scenario={str(name_or_path)!r} is invalid: no file {path}; name one of "
                          f"{sorted(p.stem for p in (configs_dir() / 'scenario').glob('*.yaml'))} or give a path")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    require(isinstance(raw, dict), "rig.scenario", str(path), "the file must hold a mapping of scenario fields")
    assert isinstance(raw, dict)
    raw.pop("defaults", None)
    return {str(key): value for key, value in raw.items()}


def scaled_hardware(name_or_path: str, time_scale: float) -> dict[str, Any]:
    """The GPU type ``name_or_path`` as seen on a wall clock running ``1 / time_scale`` times faster."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / "hardware" / f"{name_or_path}.yaml"
    raw = yaml.safe_load(path.read_text())
    for key in _GPU_RATES:
        raw[key] = float(raw[key]) / time_scale
    for key in _GPU_DURATIONS:
        raw["calibration"][key] = float(raw["calibration"][key]) * time_scale
    # A wall GPU-hour does 1 / time_scale GPU-hours of work: the price per token stays the same.
    raw["usd_per_gpu_hour"] = float(raw["usd_per_gpu_hour"]) / time_scale
    raw["name"] = f"{raw.get('name', path.stem)}-x{1 / time_scale:g}"
    return dict(raw)


def scaled_scenario(raw: dict[str, Any], time_scale: float, hardware_path: str) -> dict[str, Any]:
    """Scenario fields ``raw`` in wall time: durations x ``time_scale``, rates / ``time_scale``, and the GPU
    type replaced by ``hardware_path`` (see :func:`scaled_hardware`)."""
    view = copy.deepcopy(raw)
    view["hardware"] = hardware_path
    view["duration_s"] = float(view.get("duration_s", 7200.0)) * time_scale
    view["tenants"] = [_scaled_tenant(tenant, time_scale) for tenant in view.get("tenants", [])]
    cluster = view.setdefault("cluster", {})
    for key in _CLUSTER_DURATIONS:
        if key in cluster:
            cluster[key] = float(cluster[key]) * time_scale
    for key in ("kv_link_gbps", "usd_per_gpu_hour"):
        if cluster.get(key) is not None:
            cluster[key] = float(cluster[key]) / time_scale
    return view


def _scaled_tenant(tenant: dict[str, Any], time_scale: float) -> dict[str, Any]:
    for key, default in (("ttft_slo_s", DEFAULT_TTFT_SLO_S), ("tpot_slo_s", DEFAULT_TPOT_SLO_S)):
        tenant[key] = float(tenant.get(key, default)) * time_scale
    arrival = tenant.setdefault("arrival", {})
    arrival["rate_rps"] = float(arrival.get("rate_rps", 1.0)) / time_scale
    for key in ("diurnal_period_s", "diurnal_phase_s"):
        if key in arrival:
            arrival[key] = float(arrival[key]) * time_scale
    for change in arrival.get("changes", []):
        for key in ("start_s", "duration_s"):
            if key in change:
                change[key] = float(change[key]) * time_scale
    if tenant.get("trace"):
        tenant["trace"]["rate_multiplier"] = float(tenant["trace"].get("rate_multiplier", 1.0)) / time_scale
    return tenant


def write_wall_clock_view(scenario: str, time_scale: float, folder: Path) -> Path:
    """Write the wall-time scenario of ``scenario`` (and its GPU type) into ``folder``; returns its path."""
    raw = scenario_mapping(scenario)
    hardware = folder / "hardware.yaml"
    hardware.write_text(yaml.safe_dump(scaled_hardware(str(raw.get("hardware", "h100-sxm")), time_scale)))
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(scaled_scenario(raw, time_scale, str(hardware)), sort_keys=False))
    return path
