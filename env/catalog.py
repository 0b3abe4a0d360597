"""The hardware and model catalog: GPU types and model architectures, every figure a config value.

GPU figures live in ``configs/hardware/*.yaml`` (each with its public source cited there); models are
described by a Hugging Face-style ``config.json`` (``configs/model/hf/<name>/config.json``), so a new model
is added without code. Everything the performance model needs is derived here: parameters, active
parameters (MoE), weight bytes and KV-cache bytes per token.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from disaggpilot.env.errors import CatalogError, ConfigError, require
from disaggpilot.env.tp_calibration import TpCalibration

BYTES_PER_DTYPE: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp32": 4.0}


@dataclass
class PerfCalibration:
    """Efficiency factors and overheads of the roofline model, fitted to measurements (docs/architecture.md).

    Defaults are the H100 figures of ``configs/hardware/h100-sxm.yaml``, fitted by ``benchmarks/fit_perf.py``
    on ``splitwise_perf_model.csv`` (``decode_memory_efficiency`` and ``link_efficiency`` are held at
    Vidur's measurements there, not fitted).
    """

    prefill_compute_efficiency: float = 0.5585
    """Fraction of peak dense FLOP/s a prefill reaches at tensor-parallel degree 1 (0..1]."""
    tp_efficiency_exponent: float = 0.1209
    """Compute efficiency falls as ``tp ** -exponent``: smaller per-GPU matmuls run less efficiently."""
    prefill_overhead_s: float = 0.02184
    """Latency floor of one prefill iteration, overlapped with its compute (seconds)."""
    decode_memory_efficiency: float = 0.8
    """Fraction of HBM bandwidth a decode step reaches reading weights and KV cache (0..1]."""
    decode_compute_efficiency: float = 0.1733
    """Fraction of peak FLOP/s reached by the per-sequence matmul work of a decode step (0..1]."""
    decode_overhead_s: float = 0.005835
    """Fixed cost of one decode iteration: scheduling, sampling, kernel launches (seconds)."""
    allreduce_latency_s: float = 3.276e-5
    """Latency of one all-reduce per doubling of the tensor-parallel group (seconds)."""
    link_efficiency: float = 0.5
    """Fraction of intra-node bandwidth an all-reduce or KV transfer reaches (0..1]."""

    def __post_init__(self) -> None:
        for name in ("prefill_compute_efficiency", "decode_memory_efficiency", "decode_compute_efficiency",
                     "link_efficiency"):
            value = getattr(self, name)
            require(0.0 < value <= 1.0, f"calibration.{name}", value,
                    "efficiencies are fractions in (0, 1]: nothing may beat the roofline")
        for name in ("prefill_overhead_s", "decode_overhead_s", "allreduce_latency_s",
                     "tp_efficiency_exponent"):
            value = getattr(self, name)
            require(value >= 0.0, f"calibration.{name}", value, "use a value >= 0")


@dataclass
class GpuSpec:
    """One GPU type. Figures are per GPU; sources are cited in ``configs/hardware/<name>.yaml``."""

    name: str = "h100-sxm"
    """Catalog name, e.g. ``h100-sxm``."""
    peak_bf16_tflops: float = 989.0
    """Peak dense BF16 tensor throughput (TFLOP/s, without sparsity)."""
    hbm_bandwidth_tbps: float = 3.35
    """HBM bandwidth (TB/s)."""
    memory_gb: float = 80.0
    """HBM capacity (GB, 1e9 bytes)."""
    intra_node_gbps: float = 348.0
    """Measured GPU-to-GPU bandwidth inside a node (GB/s): NVLink, or PCIe where there is none."""
    inter_node_gbps: float = 36.0
    """Measured bandwidth between nodes per GPU (GB/s): the KV-transfer path between pools."""
    usd_per_gpu_hour: float = 3.0
    """Default price (USD per GPU-hour); scenarios may override."""
    gpus_per_node: int = 8
    """GPUs sharing the intra-node fabric; the tensor-parallel degree may not exceed it."""
    calibration: PerfCalibration = field(default_factory=PerfCalibration)
    """Fitted efficiency factors and overheads."""
    tp_calibration: TpCalibration | None = None
    """Calibration of the ``tp-comm`` performance model (``env.perf_tp``); None: that model refuses it."""

    def __post_init__(self) -> None:
        if isinstance(self.calibration, dict):
            self.calibration = PerfCalibration(**self.calibration)
        if isinstance(self.tp_calibration, dict):
            self.tp_calibration = TpCalibration(**self.tp_calibration)
        for name in ("peak_bf16_tflops", "hbm_bandwidth_tbps", "memory_gb", "intra_node_gbps",
                     "inter_node_gbps"):
            require(getattr(self, name) > 0, f"hardware.{name}", getattr(self, name), "use a positive figure")
        require(self.usd_per_gpu_hour >= 0, "hardware.usd_per_gpu_hour", self.usd_per_gpu_hour, "use >= 0")
        require(self.gpus_per_node >= 1, "hardware.gpus_per_node", self.gpus_per_node, "use >= 1")

    @property
    def peak_flops(self) -> float:
        """Peak dense BF16 FLOP/s."""
        return self.peak_bf16_tflops * 1e12

    @property
    def hbm_bytes_per_s(self) -> float:
        """HBM bandwidth in bytes/s."""
        return self.hbm_bandwidth_tbps * 1e12

    @property
    def memory_bytes(self) -> float:
        """HBM capacity in bytes."""
        return self.memory_gb * 1e9


@dataclass
class ModelSpec:
    """A decoder-only transformer described by its architecture numbers."""

    name: str = "llama-3.1-70b"
    """Catalog name."""
    num_layers: int = 80
    """Transformer blocks."""
    hidden_size: int = 8192
    """Model width (elements)."""
    num_heads: int = 64
    """Attention query heads."""
    num_kv_heads: int = 8
    """Key/value heads (fewer than query heads under grouped-query attention)."""
    head_dim: int = 128
    """Elements per attention head."""
    intermediate_size: int = 28672
    """MLP width of a dense layer, or of one expert (elements)."""
    vocab_size: int = 128256
    """Vocabulary size (tokens)."""
    gated_mlp: bool = True
    """SwiGLU-style MLP with three matrices (gate, up, down) instead of two."""
    num_experts: int = 1
    """Experts per MoE layer; 1 for a dense model."""
    experts_per_token: int = 1
    """Experts each token is routed to."""
    tie_embeddings: bool = False
    """Input embedding and output head share weights."""
    max_context: int = 131072
    """Longest sequence the model accepts (tokens)."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "vocab_size", "num_experts", "experts_per_token", "max_context"):
            require(getattr(self, name) >= 1, f"model.{name}", getattr(self, name), "use a positive integer")
        require(self.num_heads % self.num_kv_heads == 0, "model.num_kv_heads", self.num_kv_heads,
                f"must divide num_heads={self.num_heads}")
        require(self.experts_per_token <= self.num_experts, "model.experts_per_token", self.experts_per_token,
                f"must be <= num_experts={self.num_experts}")

    def _attention_params(self) -> int:
        q_and_o = 2 * self.hidden_size * self.num_heads * self.head_dim
        k_and_v = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        return q_and_o + k_and_v

    def _expert_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    def _router_params(self) -> int:
        return self.hidden_size * self.num_experts if self.num_experts > 1 else 0

    @property
    def embedding_params(self) -> int:
        """Input embedding plus output head (counted once when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def params(self) -> int:
        """All parameters (norms omitted: under 0.01%)."""
        per_layer = (self._attention_params() + self.num_experts * self._expert_params()
                     + self._router_params())
        return self.num_layers * per_layer + self.embedding_params

    @property
    def active_params(self) -> int:
        """Parameters that multiply each token: attention, the routed experts and the output head."""
        per_layer = (self._attention_params() + self.experts_per_token * self._expert_params()
                     + self._router_params())
        return self.num_layers * per_layer + self.vocab_size * self.hidden_size

    def weight_bytes(self, dtype: str = "bf16") -> float:
        """Bytes of all weights in ``dtype``."""
        return self.params * _dtype_bytes(dtype)

    def kv_bytes_per_token(self, dtype: str = "bf16") -> float:
        """KV-cache bytes one token occupies across all layers (keys and values)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * _dtype_bytes(dtype)

    @classmethod
    def from_hf_config(cls, path: str | Path, name: str | None = None) -> ModelSpec:
        """Build from a Hugging Face ``config.json`` (Llama, Mistral, Mixtral, Qwen families)."""
        path = Path(path)
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CatalogError(f"{path}: cannot read a model config.json ({error})") from error
        return cls(**_hf_fields(raw, path, name or path.parent.name))


def _dtype_bytes(dtype: str) -> float:
    if dtype not in BYTES_PER_DTYPE:
        raise CatalogError(f"dtype={dtype!r} is unknown: use one of {sorted(BYTES_PER_DTYPE)}")
    return BYTES_PER_DTYPE[dtype]


def _hf_fields(raw: dict[str, Any], path: Path, name: str) -> dict[str, Any]:
    def number(key: str, default: Any = None) -> int:
        value = raw.get(key)
        value = default if value is None else value  # a null in config.json means "not set"
        if value is None:
            raise CatalogError(f"{path}: field {key!r} is missing: copy it from the model's config.json on "
                               "the Hugging Face hub")
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise CatalogError(f"{path}: field {key!r}={value!r} is not an integer: fix it in the file")
        return int(value)

    hidden, heads = number("hidden_size"), number("num_attention_heads")
    # Mixtral names its expert count num_local_experts, Qwen-MoE num_experts; a null means dense.
    experts = number("num_local_experts", raw.get("num_experts") or 1)
    # Qwen-MoE gives the expert width as moe_intermediate_size; Mixtral reuses intermediate_size.
    moe_width = experts > 1 and raw.get("moe_intermediate_size") is not None
    width_key = "moe_intermediate_size" if moe_width else "intermediate_size"
    activation = str(raw.get("hidden_act", "silu"))
    return {
        "name": name,
        "num_layers": number("num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": number("num_key_value_heads", heads),
        "head_dim": number("head_dim", math.ceil(hidden / heads) if heads else 1),
        "intermediate_size": number(width_key),
        "vocab_size": number("vocab_size"),
        "gated_mlp": bool(raw.get("gated_mlp", activation in ("silu", "swiglu", "gelu_pytorch_tanh"))),
        "num_experts": experts,
        "experts_per_token": number("num_experts_per_tok", 1),
        "tie_embeddings": bool(raw.get("tie_word_embeddings", False)),
        "max_context": number("max_position_embeddings", 4096),
    }


# --- Loading from the config tree --------------------------------------------------------------------------

SHIPPED_BUNDLE = "policies/disaggpilot-generalist-v6"
"""The shipped policy bundle, relative to the repository root. It is named here, in the lowest layer, so that
``localcluster.rig`` can print a controller command that runs it; ``agent.analysis`` re-exports it."""

CONFIGS_ENV_VAR = "DISAGGPILOT_CONFIGS"
"""Environment variable that points the loaders at another config tree."""


def configs_dir() -> Path:
    """The config tree: ``$DISAGGPILOT_CONFIGS`` when set, else ``configs/`` beside the ``env`` package."""
    override = os.environ.get(CONFIGS_ENV_VAR)
    return Path(override) if override else Path(__file__).resolve().parents[1] / "configs"


def load_model(name_or_path: str | Path, configs_dir: str | Path | None = None) -> ModelSpec:
    """Load a model by catalog name (``configs/model/<name>.yaml``), YAML path or ``config.json`` path.

    The YAML holds ``name`` and ``hf_config``, the latter relative to the YAML's folder.

    Args:
        name_or_path: e.g. ``llama-3.1-70b``, ``path/to/model.yaml`` or ``path/to/config.json``.
        configs_dir: config tree to search by name; default :func:`configs_dir`.

    Raises:
        CatalogError: the file is missing or a field is missing or malformed (the message says which).
    """
    path = _resolve(name_or_path, "model", configs_dir)
    if path.suffix == ".json":
        return ModelSpec.from_hf_config(path)
    raw = _read_yaml(path, required={"name": str, "hf_config": str}, optional={})
    hf_path = path.parent / raw["hf_config"]
    if not hf_path.is_file():
        raise CatalogError(f"{path}: field 'hf_config'={raw['hf_config']!r} names no file ({hf_path}): "
                           "give a config.json path relative to the YAML's folder")
    return ModelSpec.from_hf_config(hf_path, name=raw["name"])


def load_gpu(name: str | Path, configs_dir: str | Path | None = None) -> GpuSpec:
    """Load a GPU type by catalog name (``configs/hardware/<name>.yaml``) or YAML path.

    Every :class:`GpuSpec` field and every :class:`PerfCalibration` field must be present: a silently
    defaulted efficiency would give one GPU type another's fitted figures.

    Raises:
        CatalogError: the file is missing or a field is missing, unknown or not a number.
        ConfigError: a figure is out of range (e.g. an efficiency above 1); the message names the file.
    """
    path = _resolve(name, "hardware", configs_dir)
    numeric: dict[str, type] = {f.name: (int if f.type in (int, "int") else float) for f in fields(GpuSpec)
                                if f.name not in ("name", "calibration", "tp_calibration")}
    raw = _read_yaml(path, required={**numeric, "calibration": dict},
                     optional={"name": str, "tp_calibration": dict})
    calibration = _check_mapping(raw["calibration"], path, "calibration.",
                                 required={f.name: float for f in fields(PerfCalibration)})
    tp_fields = None
    if "tp_calibration" in raw:  # optional, but complete when present (no field silently defaulted)
        tp_fields = _check_mapping(raw["tp_calibration"], path, "tp_calibration.",
                                   required={f.name: float for f in fields(TpCalibration)})
    try:
        return GpuSpec(**{**raw, "name": raw.get("name", path.stem),
                          "calibration": PerfCalibration(**calibration),
                          "tp_calibration": None if tp_fields is None else TpCalibration(**tp_fields)})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def _resolve(name_or_path: str | Path, group: str, root: str | Path | None) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml", ".json"):
        if not candidate.is_file():
            raise CatalogError(f"{candidate}: no such file: check the path")
        return candidate
    folder = (Path(root) if root is not None else configs_dir()) / group
    path = folder / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise CatalogError(f"{path}: no {group} named {str(name_or_path)!r}: use one of {known} or add "
                           f"{group}/{name_or_path}.yaml (or set ${CONFIGS_ENV_VAR})")
    return path


def _read_yaml(path: Path, required: dict[str, type], optional: dict[str, type]) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"{path}: cannot read YAML ({error})") from error
    return _check_mapping(raw, path, "", required, optional)


_KINDS = {float: "number", int: "whole number", str: "string", dict: "mapping"}


def _check_mapping(raw: object, path: Path, prefix: str, required: dict[str, type],
                   optional: dict[str, type] | None = None) -> dict[str, Any]:
    """Check a parsed mapping's keys and value types; numbers may be written as ints or floats."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: {prefix or 'the file'} must be a mapping of key: value")
    allowed = {**required, **(optional or {})}
    for key in raw:
        if key not in allowed:
            raise CatalogError(f"{path}: field {prefix + key!r} is unknown: use one of {sorted(allowed)}")
    for key, kind in allowed.items():
        if key not in raw:
            if key in required:
                raise CatalogError(f"{path}: field {prefix + key!r} is missing: add it (a {_KINDS[kind]})")
            continue
        value = raw[key]
        numeric_ok = kind is float and isinstance(value, int | float)
        if isinstance(value, bool) or not (numeric_ok or isinstance(value, kind)):
            raise CatalogError(f"{path}: field {prefix + key!r}={value!r} is not a {_KINDS[kind]}: fix it")
    return dict(raw)
