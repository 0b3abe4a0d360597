"""A tensor-parallel performance model that extrapolates across TP (issue 22, item 1): ``perf_model: tp-comm``.

Same interface as :class:`env.perf.PerfModel` (the ``roofline`` model, still the default), different terms:

- **Communication is its own term.** Megatron-style TP does two all-reduces per layer (after attention and
  after the MLP; Shoeybi et al., *Megatron-LM*, arXiv:1909.08053, section 3). Each costs a latency of
  ``log2(tp) * alpha`` (the small-message, tree/recursive-doubling cost), with ``alpha = n_1/2 / link``
  (Hockney's half-performance message length ``n_1/2``, the ``allreduce_half_bytes`` field, shared by GPU
  types, so each link's speed sets its own latency), plus the ring's bandwidth term
  ``2 (n-1)/n * bytes / link`` (Thakur, Rabenseifner and Gropp, *Optimization of collective communication
  operations in MPICH*, IJHPCA 2005; the ``busbw`` factor of NCCL's performance notes). The link
  is the GPU type's measured intra-node bandwidth (NVLink through NVSwitch: NVLink 3 on A100 is 600 GB/s and
  NVLink 4 on H100 900 GB/s bidirectional per GPU, NVIDIA datasheets; the catalog holds Vidur's measured
  send/recv figures) times ``link_efficiency``.
- **Partial overlap.** A fraction ``comm_overlap`` of the bandwidth time hides under the linear layers'
  matmuls (as async/sequence-parallel TP does), never more than that compute itself. The shipped fit
  holds it at 0: the 2023 vLLM measured waits for each all-reduce.
- **Attention apart from the linear layers**, each with its own efficiency <= 1: prefill attention is
  quadratic in context (causal query-key pairs) at ``attention_efficiency`` of peak FLOP/s, on
  ``tp ** (1 - attention_tp_exponent)`` GPUs' worth of it: Splitwise's long prompts and big batches slow
  down relative to short ones as TP grows (A100 per token, 4096 against 2048 tokens: 1.08x at TP 2,
  1.20x at TP 4 and 8), as if attention did not shrink with TP at all, and a fit in [0, 1] puts the
  exponent on 1; decode attention is linear in the KV bytes read at ``decode_kv_efficiency`` of HBM bandwidth.
- **Masked cross-sequence pairs.** A stack that attends a batched prefill's tokens as one masked sequence
  computes ``tokens**2 / 2`` causal pairs, not the per-sequence ones, and discards the rest; a fitted
  per-GPU fraction ``cross_sequence_pair_fraction`` of those wasted pairs is charged at attention's rate.
  Splitwise's A100 batches of 512-token prompts are 8-34 % slower than one prompt of the same tokens
  (more so as TP grows and linear layers shrink) while its H100 batches are faster, which this term
  reproduces with a larger fraction for A100 (0.70) than H100 (0.19; docs/experiments/2026-12-07-tp-model.md).

Every efficiency is a fraction of a roofline rate and every overhead is added, so no time beats the roofline.
Everything that does not depend on a step's sizes is computed once here, so a step costs a few flops.
"""

from __future__ import annotations

import math

from disaggpilot.env.catalog import GpuSpec, ModelSpec
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.tp_calibration import TpCalibration

PERF_MODELS = ("roofline", "tp-comm")
"""Performance model names: ``roofline`` (env.perf, the shipped default) and ``tp-comm`` (this module)."""


class TpPerfModel(PerfModel):
    """Iteration times with communication, overlap and attention as separate terms (see the module doc).

    Takes :class:`PerfModel`'s arguments; reads ``gpu.tp_calibration`` instead of ``gpu.calibration``.
    Decode and mixed steps reuse :class:`PerfModel`'s methods over the coefficients computed here, so the
    mixed-step guarantees (monotone, between the larger part and the sum) hold the same way.
    """

    def _precompute(self) -> None:
        if self.gpu.tp_calibration is None:
            raise ConfigError(f"hardware {self.gpu.name} has no tp_calibration, which perf_model=tp-comm needs: "
                              "add one to its configs/hardware YAML (fit with benchmarks/fit_tp_perf.py)")
        cal: TpCalibration = self.gpu.tp_calibration
        self.tp_calibration = cal
        gpu, tp, model = self.gpu, self.tp, self.model
        self._flops_per_token = 2.0 * model.active_params
        self._attention_flops_per_pair = 4.0 * model.num_layers * model.num_heads * model.head_dim
        linear_rate = tp * gpu.peak_flops * cal.linear_efficiency * tp ** (-cal.linear_tp_exponent)
        self._linear_s_per_token = self._flops_per_token / linear_rate
        attention_rate = tp ** (1.0 - cal.attention_tp_exponent) * gpu.peak_flops * cal.attention_efficiency
        attention_s_per_pair = self._attention_flops_per_pair / attention_rate
        # Split so prefill_time is a sum of terms each non-decreasing in the pairs, exactly in floating point.
        self._own_pair_s = attention_s_per_pair * (1.0 - cal.cross_sequence_pair_fraction)
        self._masked_pair_s = attention_s_per_pair * cal.cross_sequence_pair_fraction
        comm_s_per_token, self._allreduce_latency_s = self._allreduce_costs(cal)
        # Overlap is linear in tokens like both terms, so the exposed share is one per-token rate.
        hidden = min(cal.comm_overlap * comm_s_per_token, self._linear_s_per_token)
        self._allreduce_s_per_token = comm_s_per_token
        self._exposed_comm_s_per_token = comm_s_per_token - hidden
        self._weights_read_s = self.weight_bytes / (tp * gpu.hbm_bytes_per_s * cal.decode_weight_efficiency)
        decode_rate = tp * gpu.peak_flops * cal.decode_compute_efficiency
        self._decode_s_per_seq = self._flops_per_token / decode_rate + comm_s_per_token
        self._kv_read_s_per_token = self.kv_bytes_per_token / (tp * gpu.hbm_bytes_per_s * cal.decode_kv_efficiency)
        self._decode_fixed_s = cal.decode_overhead_s + self._weights_read_s + self._allreduce_latency_s
        self._prefill_floor_s = cal.prefill_overhead_s + self._weights_read_s
        overhead_s = min(cal.prefill_overhead_s, cal.decode_overhead_s)
        self._shared_step_s = overhead_s + self._weights_read_s + self._allreduce_latency_s

    def _allreduce_costs(self, cal: TpCalibration) -> tuple[float, float]:
        """(ring bandwidth seconds per token, latency seconds per iteration) of the 2 all-reduces per layer."""
        if self.tp == 1:
            return 0.0, 0.0
        allreduces = 2 * self.model.num_layers
        message_bytes = self.model.hidden_size * 2.0  # one bf16 activation row per token
        ring_bytes = 2.0 * (self.tp - 1) / self.tp * message_bytes
        link_bytes_per_s = self.gpu.intra_node_gbps * 1e9 * cal.link_efficiency
        # Hockney's model t = (n + n_1/2) / r: a faster link also has a shorter small-message latency.
        latency_s = cal.allreduce_half_bytes / link_bytes_per_s
        return allreduces * ring_bytes / link_bytes_per_s, allreduces * latency_s * math.log2(self.tp)

    def prefill_time(self, tokens: float, attention_pairs: float = 0.0) -> float:
        """One prefill iteration (seconds): ``max(floor, linear + attention) + all-reduces - overlap``.

        Attention also pays for the masked pairs between sequences, ``tokens**2 / 2 - attention_pairs`` when
        positive (none for one sequence's chunk), times ``cross_sequence_pair_fraction`` (``f``): it costs
        ``(1 - f) * pairs + f * max(pairs, tokens**2 / 2)`` pairs, so the time never falls as either grows.

        Args:
            tokens: prompt tokens computed in the iteration (all chunks together).
            attention_pairs: causal query-key pairs of the iteration's chunks (see :meth:`PerfModel.prefill_time`).
        """
        one_sequence = 0.5 * tokens * tokens
        masked = one_sequence if one_sequence > attention_pairs else attention_pairs  # max() without the call
        compute_s = (self._linear_s_per_token * tokens + self._own_pair_s * attention_pairs
                     + self._masked_pair_s * masked)
        return (max(self._prefill_floor_s, compute_s) + self._allreduce_latency_s
                + self._exposed_comm_s_per_token * tokens)


def make_perf_model(name: str, model: ModelSpec, gpu: GpuSpec, tp: int, weight_dtype: str = "bf16",
                    kv_dtype: str = "bf16", gpu_memory_utilization: float = 0.9,
                    activation_reserve_gb: float = 4.0) -> PerfModel:
    """The performance model called ``name`` (one of :data:`PERF_MODELS`) for one replica."""
    if name not in PERF_MODELS:
        raise ConfigError(f"perf_model={name!r} is unknown: use one of {list(PERF_MODELS)}")
    kind = TpPerfModel if name == "tp-comm" else PerfModel
    return kind(model, gpu, tp, weight_dtype, kv_dtype, gpu_memory_utilization, activation_reserve_gb)
