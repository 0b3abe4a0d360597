"""The performance model (docs/architecture.md): roofline times with fitted efficiency factors and overheads.

One replica runs a model on ``tp`` GPUs of one type. Every time below is at least the roofline bound
(work / peak rate), because each efficiency factor is a fraction in (0, 1] and overheads are added, never
subtracted; ``tests/env/test_perf.py`` checks it over a grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from disaggpilot.env.catalog import GpuSpec, ModelSpec
from disaggpilot.env.errors import ConfigError, require


@dataclass(frozen=True)
class DecodeCoefficients:
    """A decode step of a fixed batch costs ``base_s + per_context_token_s * context_tokens`` seconds.

    Linear in the batch's total context, which grows by one token per sequence per step, so a run of
    steps has a closed form (the simulator jumps over steps instead of simulating each one).
    """

    base_s: float
    per_context_token_s: float


class PerfModel:
    """Iteration times of one replica.

    Args:
        model: the architecture.
        gpu: the GPU type, with its fitted calibration.
        tp: tensor-parallel degree (GPUs per replica).
        weight_dtype: ``bf16``, ``fp16`` or ``fp8``.
        kv_dtype: dtype of the KV cache.
        gpu_memory_utilization: fraction of HBM vLLM may use (its ``--gpu-memory-utilization``).
        activation_reserve_gb: memory per GPU kept for activations and CUDA graphs (GB).
    """

    def __init__(self, model: ModelSpec, gpu: GpuSpec, tp: int, weight_dtype: str = "bf16",
                 kv_dtype: str = "bf16", gpu_memory_utilization: float = 0.9,
                 activation_reserve_gb: float = 4.0) -> None:
        require(1 <= tp <= gpu.gpus_per_node, "tp", tp, f"use 1..{gpu.gpus_per_node} (GPUs per node)")
        require(0.1 <= gpu_memory_utilization <= 1.0, "gpu_memory_utilization", gpu_memory_utilization,
                "use a fraction in [0.1, 1]")
        self.model, self.gpu, self.tp = model, gpu, tp
        self.calibration = gpu.calibration
        self.weight_bytes = model.weight_bytes(weight_dtype)
        self.kv_bytes_per_token = model.kv_bytes_per_token(kv_dtype)
        self.kv_capacity_tokens = self._kv_capacity(gpu_memory_utilization, activation_reserve_gb)
        self._precompute()

    def _kv_capacity(self, utilization: float, reserve_gb: float) -> int:
        free = self.gpu.memory_bytes * utilization * self.tp - self.weight_bytes - reserve_gb * 1e9 * self.tp
        if free <= self.kv_bytes_per_token * 1024:
            raise ConfigError(
                f"model {self.model.name} ({self.weight_bytes / 1e9:.0f} GB) does not fit on tp={self.tp} x "
                f"{self.gpu.name} ({self.gpu.memory_gb:.0f} GB each) with room for a KV cache: raise tp"
            )
        return int(free // self.kv_bytes_per_token)

    def _precompute(self) -> None:
        cal, gpu, tp, model = self.calibration, self.gpu, self.tp, self.model
        compute_efficiency = cal.prefill_compute_efficiency * tp ** (-cal.tp_efficiency_exponent)
        self._prefill_flops_rate = tp * gpu.peak_flops * compute_efficiency
        self._weights_read_s = self.weight_bytes / (tp * gpu.hbm_bytes_per_s * cal.decode_memory_efficiency)
        self._prefill_floor_s = cal.prefill_overhead_s + self._weights_read_s
        self._flops_per_token = 2.0 * model.active_params
        self._attention_flops_per_pair = 4.0 * model.num_layers * model.num_heads * model.head_dim
        allreduces = 2 * model.num_layers if tp > 1 else 0
        self._allreduce_latency_s = allreduces * cal.allreduce_latency_s * math.log2(tp) if tp > 1 else 0.0
        ring_bytes_per_token = 2.0 * (tp - 1) / tp * model.hidden_size * 2.0
        link = gpu.intra_node_gbps * 1e9 * cal.link_efficiency
        self._allreduce_s_per_token = allreduces * ring_bytes_per_token / link
        decode_rate = tp * gpu.peak_flops * cal.decode_compute_efficiency
        self._decode_s_per_seq = self._flops_per_token / decode_rate + self._allreduce_s_per_token
        memory_rate = tp * gpu.hbm_bytes_per_s * cal.decode_memory_efficiency
        self._kv_read_s_per_token = self.kv_bytes_per_token / memory_rate
        self._decode_fixed_s = cal.decode_overhead_s + self._weights_read_s + self._allreduce_latency_s
        overhead_s = min(cal.prefill_overhead_s, cal.decode_overhead_s)
        self._shared_step_s = overhead_s + self._weights_read_s + self._allreduce_latency_s

    def allreduce_time(self, tokens: float) -> float:
        """Tensor-parallel all-reduces of one iteration over ``tokens`` tokens (seconds; 0 at tp=1)."""
        return self._allreduce_latency_s + self._allreduce_s_per_token * tokens

    def prefill_time(self, tokens: float, attention_pairs: float = 0.0) -> float:
        """One prefill iteration over ``tokens`` prompt tokens (seconds).

        Args:
            tokens: prompt tokens computed in the iteration (all chunks together).
            attention_pairs: sum over the iteration's chunks of ``chunk * (offset + chunk / 2)``: the
                causal query-key pairs the attention computes (token pairs).
        """
        flops = self._flops_per_token * tokens + self._attention_flops_per_pair * attention_pairs
        compute_s = flops / self._prefill_flops_rate
        floor_s = self._prefill_floor_s
        # max(floor_s, compute_s) + allreduce_time(tokens), without the calls (the simulator's hot path).
        step_s = compute_s if compute_s > floor_s else floor_s
        return step_s + (self._allreduce_latency_s + self._allreduce_s_per_token * tokens)

    def decode_base_s(self, batch: int) -> float:
        """The part of a decode step of ``batch`` sequences that does not depend on context (seconds)."""
        return self._decode_fixed_s + self._decode_s_per_seq * batch

    @property
    def kv_read_s_per_token(self) -> float:
        """Decode step time per token of context held by the batch (seconds per token)."""
        return self._kv_read_s_per_token

    def decode_coefficients(self, batch: int) -> DecodeCoefficients:
        """Coefficients of a decode step of ``batch`` sequences (see :class:`DecodeCoefficients`)."""
        return DecodeCoefficients(self.decode_base_s(batch), self._kv_read_s_per_token)

    def decode_step_time(self, batch: int, context_tokens: float) -> float:
        """One decode step of ``batch`` sequences holding ``context_tokens`` tokens in all (seconds)."""
        return self.decode_base_s(batch) + self._kv_read_s_per_token * context_tokens

    def mixed_step_time(self, prefill_tokens: float, attention_pairs: float, batch: int,
                        context_tokens: float) -> float:
        """A chunked-prefill iteration: ``prefill_tokens`` of prompt plus one token for each of ``batch``
        decoding sequences, as vLLM schedules without disaggregation (seconds).

        The step is its two parts added, less what one iteration pays only once (:meth:`shared_step_s`):
        ``prefill_time(prefill_tokens, attention_pairs) + decode_step_time(batch, context_tokens) - shared``.
        Guaranteed, for every input: with no decode sequences it is exactly :meth:`prefill_time` (plus the
        KV read of ``context_tokens``, which is 0 in practice), with no prompt tokens exactly
        :meth:`decode_step_time`; otherwise ``max(prefill, decode) <= mixed <= prefill + decode``; and it is
        non-decreasing in each of ``prefill_tokens``, ``attention_pairs``, ``batch`` and ``context_tokens``
        (adding prompt tokens or decode sequences never makes a step faster).
        """
        if prefill_tokens <= 0:
            return self.decode_step_time(batch, context_tokens)
        prefill_s = self.prefill_time(prefill_tokens, attention_pairs)
        if batch <= 0:
            return prefill_s + self._kv_read_s_per_token * context_tokens
        # The prefill part's excess over the shared cost first: it is >= 0 in floating point too, so the
        # step is never below the decode step by a rounding error (the simulator's segment arithmetic).
        return self.decode_step_time(batch, context_tokens) + (prefill_s - self._shared_step_s)

    @property
    def shared_step_s(self) -> float:
        """What a mixed step pays once though its prefill and decode parts each pay it alone (seconds).

        One weight read, one round of all-reduce latencies and the smaller of the two fixed overheads.
        It is at most each part's fixed cost (a prefill's floor plus all-reduce latency, a decode step's
        fixed cost), so a mixed step never costs less than either part alone.
        """
        return self._shared_step_s

    def kv_transfer_time(self, tokens: float, link_gbps: float, latency_s: float) -> float:
        """Ship ``tokens`` tokens of KV cache from a prefill replica to a decode replica (seconds).

        Each of the ``tp`` GPUs sends its shard over its own link of ``link_gbps`` (GB/s).
        """
        return latency_s + tokens * self.kv_bytes_per_token / (self.tp * link_gbps * 1e9)

    def roofline_prefill_time(self, tokens: float, attention_pairs: float = 0.0) -> float:
        """The physical lower bound of a prefill iteration: peak FLOP/s and full HBM bandwidth (seconds)."""
        flops = self._flops_per_token * tokens + self._attention_flops_per_pair * attention_pairs
        return max(flops / (self.tp * self.gpu.peak_flops),
                   self.weight_bytes / (self.tp * self.gpu.hbm_bytes_per_s))

    def roofline_decode_time(self, batch: int, context_tokens: float) -> float:
        """The physical lower bound of a decode step (seconds)."""
        bytes_read = self.weight_bytes + self.kv_bytes_per_token * context_tokens
        return max(bytes_read / (self.tp * self.gpu.hbm_bytes_per_s),
                   self._flops_per_token * batch / (self.tp * self.gpu.peak_flops))
