"""Settings of one emulated replica: what ``python -m disaggpilot.localcluster.emulator`` takes on its command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields

from disaggpilot.env.backend import POOL_ROLES
from disaggpilot.env.catalog import load_gpu, load_model
from disaggpilot.env.errors import require
from disaggpilot.env.perf import PerfModel


@dataclass(frozen=True)
class EmulatorConfig:
    """One emulated vLLM replica of ``model`` on ``tensor_parallel`` GPUs of type ``hardware``."""

    role: str = "aggregated"
    """``prefill``, ``decode`` or ``aggregated``; P/D roles expose the NIXL connector's metric families."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8000
    """TCP port to listen on (0 lets the system pick one; the server logs which)."""
    model: str = "llama-3.1-70b"
    """Catalog model (``configs/model/<name>.yaml``) whose performance is emulated."""
    hardware: str = "h100-sxm"
    """Catalog GPU type (``configs/hardware/<name>.yaml``) whose performance is emulated."""
    tensor_parallel: int = 4
    """GPUs per replica (vLLM ``--tensor-parallel-size``)."""
    served_model_name: str = ""
    """Model name the API answers to (vLLM ``--served-model-name``); empty means ``model``."""
    max_num_seqs: int = 256
    """Batch cap: sequences running at once (vLLM ``--max-num-seqs``)."""
    max_num_batched_tokens: int = 8192
    """Token budget of one iteration (vLLM ``--max-num-batched-tokens``, tokens)."""
    max_model_len: int = 0
    """Longest prompt plus output accepted (tokens); 0 means the model's context. It also sets the edges of the
    token-count histograms, as in vLLM (1-2-5 steps up to this length)."""
    kv_cache_tokens: int = 0
    """KV-cache capacity (tokens); 0 means what the GPUs' memory leaves after the weights (env.perf)."""
    block_size: int = 16
    """Tokens per KV-cache block (vLLM ``--block-size``); KV usage and P/D block ids count in blocks."""
    gpu_memory_utilization: float = 0.9
    """Fraction of HBM the emulated vLLM may use (``--gpu-memory-utilization``), for the KV capacity."""
    kv_link_gbps: float = 0.0
    """KV-transfer bandwidth per GPU between replicas (GB/s); 0 means the GPU type's inter-node figure."""
    kv_transfer_latency_s: float = 0.002
    """Fixed cost of one KV transfer (seconds of GPU time)."""
    time_scale: float = 1.0
    """Factor on every emulated GPU duration (iterations, KV transfers, cold start): 1.0 is real GPU time, 0.1
    runs ten times faster. Latencies in ``/metrics`` are measured on the wall clock, as vLLM measures them."""
    cold_start_s: float = 0.0
    """Emulated model load before the server listens (seconds of GPU time, scaled by ``time_scale``)."""
    drain_timeout_s: float = 600.0
    """On SIGTERM, how long in-flight requests may take to finish before the process exits (wall seconds)."""
    seed: int = 0
    """Seeds the replica's engine id (the P/D ``remote_engine_id``); timing itself is deterministic."""

    def __post_init__(self) -> None:
        require(self.role in POOL_ROLES, "--role", self.role, f"use one of {POOL_ROLES}")
        require(0 <= self.port <= 65535, "--port", self.port, "use a TCP port 0..65535")
        require(self.tensor_parallel >= 1, "--tensor-parallel", self.tensor_parallel, "use >= 1 GPU")
        require(self.max_num_seqs >= 1, "--max-num-seqs", self.max_num_seqs, "use a batch cap >= 1")
        require(self.max_num_batched_tokens >= 1, "--max-num-batched-tokens", self.max_num_batched_tokens,
                "use a token budget >= 1")
        require(self.max_model_len >= 0, "--max-model-len", self.max_model_len, "use >= 1, or 0 for the model's")
        require(self.kv_cache_tokens >= 0, "--kv-cache-tokens", self.kv_cache_tokens, "use >= 1, or 0 for auto")
        require(self.block_size >= 1, "--block-size", self.block_size, "use >= 1 token")
        require(self.kv_link_gbps >= 0, "--kv-link-gbps", self.kv_link_gbps, "use > 0 GB/s, or 0 for the GPU's")
        require(self.kv_transfer_latency_s >= 0, "--kv-transfer-latency", self.kv_transfer_latency_s, "use >= 0 s")
        require(self.time_scale > 0, "--time-scale", self.time_scale, "use a factor > 0 (1.0 = real GPU time)")
        require(self.cold_start_s >= 0, "--cold-start", self.cold_start_s, "use >= 0 seconds")
        require(self.drain_timeout_s > 0, "--drain-timeout", self.drain_timeout_s, "use > 0 seconds")

    @property
    def model_name(self) -> str:
        """The name requests must give as ``model`` (the served name, else the catalog name)."""
        return self.served_model_name or self.model


@dataclass(frozen=True)
class ResolvedReplica:
    """The emulated hardware behind a config: its performance model and derived capacities."""

    perf: PerfModel
    """Iteration and KV-transfer times."""
    kv_cache_tokens: int
    """KV-cache capacity (tokens)."""
    max_model_len: int
    """Longest sequence accepted (tokens)."""
    link_gbps: float
    """KV-transfer bandwidth per GPU (GB/s)."""


def resolve(config: EmulatorConfig) -> ResolvedReplica:
    """Load the model and GPU from the catalog and derive capacities; raises ``CatalogError``/``ConfigError``."""
    model, gpu = load_model(config.model), load_gpu(config.hardware)
    perf = PerfModel(model, gpu, config.tensor_parallel, gpu_memory_utilization=config.gpu_memory_utilization)
    kv_tokens = config.kv_cache_tokens or perf.kv_capacity_tokens
    require(kv_tokens >= config.block_size, "--kv-cache-tokens", kv_tokens, f"use >= one block ({config.block_size})")
    return ResolvedReplica(perf, kv_tokens, config.max_model_len or model.max_context,
                           config.kv_link_gbps or gpu.inter_node_gbps)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Flags named in the rig contract differ from the field names only by dashes, except these.
_FLAG_NAMES = {"kv_transfer_latency_s": "--kv-transfer-latency", "cold_start_s": "--cold-start",
               "drain_timeout_s": "--drain-timeout"}


def flag_for(field_name: str) -> str:
    """The command-line flag of an :class:`EmulatorConfig` field."""
    return _FLAG_NAMES.get(field_name, _flag(field_name))


def parse_args(argv: Sequence[str] | None = None) -> EmulatorConfig:
    """Build a config from command-line flags (one per field; see :class:`EmulatorConfig`)."""
    parser = argparse.ArgumentParser(
        prog="python -m disaggpilot.localcluster.emulator",
        description="An emulated vLLM replica: vLLM's HTTP API and /metrics, timed by env.perf for a GPU.")
    defaults = EmulatorConfig()
    for item in fields(EmulatorConfig):
        default = getattr(defaults, item.name)
        kind = type(default)
        parser.add_argument(flag_for(item.name), dest=item.name, type=kind, default=default,
                            choices=list(POOL_ROLES) if item.name == "role" else None)
    return EmulatorConfig(**vars(parser.parse_args(argv)))


def to_args(config: EmulatorConfig) -> list[str]:
    """The command-line flags that :func:`parse_args` turns back into ``config``."""
    args: list[str] = []
    for item in fields(EmulatorConfig):
        args += [flag_for(item.name), str(getattr(config, item.name))]
    return args
