"""A planner profile with round numbers, so replica formulas can be checked by hand."""

from __future__ import annotations


class RoundProfile:
    """Prefill: 2,500 tokens/s/GPU at any prompt (TTFT = prompt / 10,000 s on 4 GPUs). Decode: ITL 25 ms at
    any load; best throughput 100 tokens/s/GPU per 50 ms of ITL target. Records the decode queries."""

    prefill_gpus = 4
    decode_gpus = 4

    def __init__(self) -> None:
        self.decode_queries: list[tuple[float, float]] = []

    def prefill_ttft_s(self, prompt_tokens: float) -> float:
        return prompt_tokens / 10_000.0

    def prefill_throughput_per_gpu(self, prompt_tokens: float) -> float:
        return 2_500.0

    def decode_itl_s(self, concurrency: float, context_tokens: float) -> float:
        return 0.025

    def best_decode_throughput_per_gpu(self, itl_s: float, context_tokens: float) -> float:
        self.decode_queries.append((itl_s, context_tokens))
        return 100.0 * itl_s / 0.05

    # What today's Dynamo planner also asks (LoadProfile): round numbers again.
    decode_kv_capacity_tokens = 100_000.0

    def queued_ttft_s(self, queued_tokens: float, prompt_tokens: float) -> float:
        return (queued_tokens + prompt_tokens) / 10_000.0

    def decode_step_s(self, sequences: float, kv_tokens: float) -> float:
        return 0.01 + 0.001 * sequences + 1e-6 * kv_tokens
