"""Derive the committed length fixtures from the Azure 2023 traces in ``data/traces/`` and print their statistics.

For each trace (code, conversation) this samples joint ``(input_tokens, output_tokens)`` rows without
replacement (seeded), writes ``configs/workload/azure2023_<name>_lengths.csv``, and prints the trace's mean
arrival rate (requests per second), inter-arrival CV and length statistics, the figures recorded in
``configs/workload/README.md``.

Usage::

    .venv/bin/python benchmarks/derive_length_fixtures.py [--rows 2000] [--seed 2023]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from disaggpilot.env.trace import Trace, load_trace, repo_root

TRACES: dict[str, str] = {
    "code": "data/traces/azure2023_code.csv",
    "conv": "data/traces/azure2023_conv.csv",
}
"""Fixture name -> source trace (resolved with ``env.trace.resolve_data_path``)."""


def arrival_stats(trace: Trace) -> dict[str, float]:
    """Requests, span (s), mean rate (req/s, 1 / mean gap), inter-arrival CV and per-minute count CV."""
    gaps = np.diff(trace.timestamp_s)
    per_minute = np.histogram(trace.timestamp_s, bins=np.arange(0.0, trace.timestamp_s[-1] + 60.0, 60.0))[0]
    return {"requests": float(len(trace)), "span_s": float(trace.timestamp_s[-1]),
            "rate_rps": float(1.0 / gaps.mean()), "interarrival_cv": float(gaps.std() / gaps.mean()),
            "per_minute_count_cv": float(per_minute.std() / per_minute.mean())}


def length_stats(prompt: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Mean, p50 and p99 of prompt and output lengths (tokens)."""
    stats: dict[str, float] = {}
    for name, values in (("input", prompt), ("output", output)):
        stats[f"{name}_mean"] = float(values.mean())
        stats[f"{name}_p50"] = float(np.percentile(values, 50))
        stats[f"{name}_p99"] = float(np.percentile(values, 99))
    return stats


def sample_rows(trace: Trace, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` joint (input, output) pairs drawn without replacement, in trace order (tokens)."""
    picked = np.sort(np.random.default_rng(seed).choice(len(trace), size=min(rows, len(trace)), replace=False))
    return trace.input_tokens[picked], trace.output_tokens[picked]


def write_fixture(path: Path, prompt: np.ndarray, output: np.ndarray) -> None:
    """Write a plain CSV with header ``input_tokens,output_tokens``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([prompt, output]), fmt="%d", delimiter=",",
               header="input_tokens,output_tokens", comments="")


def describe(label: str, stats: dict[str, float]) -> str:
    """One printable line of ``stats``."""
    return f"{label:<26}" + "  ".join(f"{key}={value:.6g}" for key, value in stats.items())


def main() -> None:
    """Derive every fixture and print the statistics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per fixture")
    parser.add_argument("--seed", type=int, default=2023, help="sampling seed")
    parser.add_argument("--out", type=Path, default=repo_root() / "configs" / "workload", help="output dir")
    args = parser.parse_args()
    for name, source in TRACES.items():
        trace = load_trace(source, "azure")
        prompt, output = sample_rows(trace, args.rows, args.seed)
        target = args.out / f"azure2023_{name}_lengths.csv"
        write_fixture(target, prompt, output)
        print(f"== {name}: {trace.path} -> {target}")
        print(describe("arrivals (whole trace)", arrival_stats(trace)))
        print(describe("lengths (whole trace)", length_stats(trace.input_tokens, trace.output_tokens)))
        print(describe(f"lengths ({len(prompt)} sampled)", length_stats(prompt, output)))


if __name__ == "__main__":
    main()
