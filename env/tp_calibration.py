"""Calibration of the tensor-parallel performance model (``perf_model: tp-comm``, :mod:`env.perf_tp`).

Separate from :class:`env.catalog.PerfCalibration` so the shipped model (``roofline``) stays bit-identical
while the new one is measured beside it (issue 22, item 1). Fitted jointly over every GPU type and TP by
``benchmarks/fit_tp_perf.py``; the fields it marks *shared* carry one value for every GPU type.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from disaggpilot.env.errors import require

FRACTIONS = ("linear_efficiency", "attention_efficiency", "decode_weight_efficiency", "decode_kv_efficiency",
             "decode_compute_efficiency", "link_efficiency")
"""Efficiencies: fractions of a roofline rate in (0, 1], so no time beats the roofline."""
UNIT_INTERVAL = ("attention_tp_exponent", "comm_overlap", "cross_sequence_pair_fraction")
"""Fractions in [0, 1] that may be 0."""


@dataclass
class TpCalibration:
    """Efficiencies, overheads and the link model of :class:`env.perf_tp.TpPerfModel` for one GPU type.

    Defaults are the H100 figures of ``configs/hardware/h100-sxm.yaml``.
    """

    linear_efficiency: float = 0.6
    """Fraction of peak dense FLOP/s the prefill's linear layers (QKV, O, MLP, head) reach at TP 1 (0..1]."""
    linear_tp_exponent: float = 0.0
    """Linear-layer efficiency falls as ``tp ** -exponent``: a shard's matmuls are narrower (shared, >= 0)."""
    attention_efficiency: float = 0.3
    """Fraction of peak FLOP/s prefill attention (causal query-key pairs) reaches (0..1]."""
    attention_tp_exponent: float = 0.0
    """How little prefill attention speeds up with TP ([0, 1]; shared): its rate is ``tp ** (1 - exponent)``
    GPUs' worth, so 0 splits it perfectly over the shards' heads and 1 leaves each GPU's time unchanged
    (never slower, never beating the roofline)."""
    prefill_overhead_s: float = 0.02
    """Latency floor of one prefill iteration, overlapped with its compute (seconds)."""
    decode_weight_efficiency: float = 0.8
    """Fraction of HBM bandwidth a decode step reaches reading the weights (0..1]."""
    decode_kv_efficiency: float = 0.5
    """Fraction of HBM bandwidth decode attention reaches reading the KV cache (0..1]."""
    decode_compute_efficiency: float = 0.2
    """Fraction of peak FLOP/s the per-sequence matmul work of a decode step reaches (0..1]."""
    decode_overhead_s: float = 0.006
    """Fixed cost of one decode iteration: scheduling, sampling, kernel launches (seconds)."""
    allreduce_half_bytes: float = 1e7
    """All-reduce latency per ``log2(tp)`` step, as bytes the link would move in that time (Hockney's
    ``n_1/2``: latency = n_1/2 / bandwidth), so one shared value gives each GPU type's link its own latency."""
    link_efficiency: float = 0.5
    """Fraction of the catalog's intra-node bandwidth an all-reduce's ring traffic reaches (0..1]."""
    comm_overlap: float = 0.0
    """Fraction of the all-reduce bandwidth time hidden under the linear layers' compute ([0, 1]; shared)."""
    cross_sequence_pair_fraction: float = 0.0
    """Fraction of a batched prefill's cross-sequence query-key pairs its attention computes and masks
    away ([0, 1]): 0 is per-sequence (variable-length) attention, 1 attends the iteration's tokens as one
    masked sequence. A property of the serving stack measured on the GPU type, so fitted per type."""

    def __post_init__(self) -> None:
        for name in FRACTIONS:
            value = getattr(self, name)
            require(0.0 < value <= 1.0, f"tp_calibration.{name}", value,
                    "efficiencies are fractions in (0, 1]: nothing may beat the roofline")
        for name in UNIT_INTERVAL:
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"tp_calibration.{name}", value, "use a fraction in [0, 1]")
        for f in fields(self):
            if f.name not in FRACTIONS + UNIT_INTERVAL:
                value = getattr(self, f.name)
                require(value >= 0.0, f"tp_calibration.{f.name}", value, "use a value >= 0")
