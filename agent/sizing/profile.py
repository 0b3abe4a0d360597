"""A performance profile: TTFT and throughput per GPU of one prefill and one decode replica (the SLA planner's).

Dynamo profiles each engine once before deployment: prefill TTFT and throughput per GPU against prompt
length (one request at a time), decode ITL and throughput per GPU against concurrency and context length.
Here the profile is read off the simulator's performance model (:class:`env.perf.PerfModel`) for each
pool's tensor-parallel degree, in closed form; the planner only sees it through :class:`PlannerProfile`,
so tests can hand it a profile with round numbers.
"""

from __future__ import annotations

import math
from typing import Protocol

from disaggpilot.env.catalog import load_gpu, load_model
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.perf_tp import make_perf_model
from disaggpilot.env.scenario import ScenarioConfig


class PlannerProfile(Protocol):
    """What the planner knows of one prefill and one decode replica.

    Attributes:
        prefill_gpus: GPUs per prefill replica.
        decode_gpus: GPUs per decode replica.
    """

    prefill_gpus: int
    decode_gpus: int

    def prefill_ttft_s(self, prompt_tokens: float) -> float:
        """TTFT of one prompt alone on a prefill replica (seconds)."""
        ...

    def prefill_throughput_per_gpu(self, prompt_tokens: float) -> float:
        """Prompt tokens per second per GPU at that prompt length (tokens/s/GPU)."""
        ...

    def decode_itl_s(self, concurrency: float, context_tokens: float) -> float:
        """Inter-token latency of a decode replica holding ``concurrency`` sequences of ``context_tokens``
        tokens each (seconds)."""
        ...

    def best_decode_throughput_per_gpu(self, itl_s: float, context_tokens: float) -> float:
        """The highest output tokens per second per GPU whose ITL stays within ``itl_s`` at that context
        (tokens/s/GPU); the throughput at concurrency 1 when no concurrency meets it."""
        ...


class LoadProfile(PlannerProfile, Protocol):
    """What Dynamo's load-based scaling also estimates: the next request's TTFT behind a queue, and the next
    decode step's time (its per-iteration regressions, here read off the performance model).

    Attributes:
        decode_kv_capacity_tokens: KV-cache tokens one decode replica holds (tokens).
    """

    decode_kv_capacity_tokens: float

    def queued_ttft_s(self, queued_tokens: float, prompt_tokens: float) -> float:
        """TTFT of a prompt of ``prompt_tokens`` arriving behind ``queued_tokens`` waiting prompt tokens on one
        prefill replica: the queue and the prompt cut into token-budget iterations (seconds)."""
        ...

    def decode_step_s(self, sequences: float, kv_tokens: float) -> float:
        """One decode step of ``sequences`` sequences holding ``kv_tokens`` KV tokens in all (seconds)."""
        ...


class PerfProfile:
    """A :class:`PlannerProfile` computed from the scenario's performance model.

    Args:
        scenario: the model, hardware and the cluster's prefill and decode pools (tp, token budget, batch
            cap, memory utilisation).

    Raises:
        ConfigError: the cluster has no prefill/decode pools (the planner scales a disaggregated cluster).
    """

    def __init__(self, scenario: ScenarioConfig) -> None:
        cluster = scenario.cluster
        if not (cluster.prefill.enabled and cluster.decode.enabled):
            raise ConfigError(f"scenario {scenario.name!r} has no prefill/decode pools: the SLA planner and the "
                              "headroom sizer scale a disaggregated cluster; use threshold or saturation for an "
                              "aggregated one")
        gpu, model = load_gpu(scenario.hardware), load_model(scenario.model)
        def perf(tp: int) -> PerfModel:
            return make_perf_model(scenario.perf_model, model, gpu, tp, scenario.weight_dtype,
                                   scenario.kv_dtype, cluster.gpu_memory_utilization)
        self.prefill, self.decode = perf(cluster.prefill.tp), perf(cluster.decode.tp)
        self.prefill_gpus, self.decode_gpus = cluster.prefill.tp, cluster.decode.tp
        self.chunk_tokens = cluster.prefill.max_num_batched_tokens
        self.batch_cap = cluster.decode.max_num_seqs
        self.decode_kv_capacity_tokens = float(self.decode.kv_capacity_tokens)

    def prefill_ttft_s(self, prompt_tokens: float) -> float:
        """Chunked prefill of one prompt under the pool's token budget: the sum of its iterations."""
        done, total = 0.0, 0.0
        remaining = max(1.0, prompt_tokens)
        while remaining > 0:
            chunk = min(remaining, float(self.chunk_tokens))
            total += self.prefill.prefill_time(chunk, chunk * (done + chunk / 2))
            done, remaining = done + chunk, remaining - chunk
        return total

    def prefill_throughput_per_gpu(self, prompt_tokens: float) -> float:
        """``prompt / TTFT / tp``, as Dynamo's profiler reports it."""
        tokens = max(1.0, prompt_tokens)
        return tokens / self.prefill_ttft_s(tokens) / self.prefill_gpus

    def decode_itl_s(self, concurrency: float, context_tokens: float) -> float:
        """One decode step of ``concurrency`` (>= 1) sequences: fixed cost plus a cost per sequence."""
        return self.decode.decode_base_s(0) + max(1.0, concurrency) * self._per_sequence_s(context_tokens)

    def queued_ttft_s(self, queued_tokens: float, prompt_tokens: float) -> float:
        """Every iteration is a full token budget of prompts of mean length ``prompt_tokens`` (the last one the
        remainder), as Dynamo's estimate chunks the queue plus one prompt by ``max_num_batched_tokens``."""
        remaining, total = max(0.0, queued_tokens) + max(1.0, prompt_tokens), 0.0
        while remaining > 0:
            chunk = min(remaining, float(self.chunk_tokens))
            total += self.prefill.prefill_time(chunk, chunk * max(1.0, prompt_tokens) / 2)
            remaining -= chunk
        return total

    def decode_step_s(self, sequences: float, kv_tokens: float) -> float:
        """Fixed cost, a compute cost per sequence, and the KV read of every token held."""
        compute_s = self.decode.decode_base_s(1) - self.decode.decode_base_s(0)
        return (self.decode.decode_base_s(0) + max(0.0, sequences) * compute_s
                + self.decode.kv_read_s_per_token * max(0.0, kv_tokens))

    def best_decode_throughput_per_gpu(self, itl_s: float, context_tokens: float) -> float:
        """The largest batch within ``itl_s``, the batch cap and the KV cache, converted to tokens/s/GPU."""
        batch = self._best_batch(itl_s, context_tokens)
        return batch / self.decode_itl_s(batch, context_tokens) / self.decode_gpus

    def _per_sequence_s(self, context_tokens: float) -> float:
        """Step time added by one more sequence holding ``context_tokens`` tokens (seconds)."""
        compute_s = self.decode.decode_base_s(1) - self.decode.decode_base_s(0)
        return compute_s + self.decode.kv_read_s_per_token * max(0.0, context_tokens)

    def _best_batch(self, itl_s: float, context_tokens: float) -> int:
        fits = int(self.decode.kv_capacity_tokens // max(1.0, context_tokens))
        limit = max(1, min(self.batch_cap, fits))
        within = (itl_s - self.decode.decode_base_s(0)) / self._per_sequence_s(context_tokens)
        return max(1, min(limit, math.floor(within + 1e-9)))
