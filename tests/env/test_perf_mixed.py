"""Mixed steps (chunked prefill beside decoding sequences): monotone, bounded by their parts, pure parts exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from disaggpilot.env.catalog import load_gpu, load_model
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.perf_tp import PERF_MODELS, make_perf_model

CONFIGS = [("llama-3.1-8b", "h100-sxm", 1), ("llama-3.1-8b", "l40s", 2), ("llama-3.1-70b", "h100-sxm", 4),
           ("llama-3.1-70b", "h100-sxm", 8), ("llama-3.1-70b", "a100-80gb", 4), ("llama-2-70b", "a100-80gb", 8),
           ("mixtral-8x7b", "h200", 2), ("llama-3.1-70b", "b200", 2)]
"""Models, GPUs and TPs from the catalog, with both calibrated GPUs and both overhead orders."""
PROMPT = (0, 1, 16, 256, 512, 2048, 8192)
"""Prompt tokens in the step: one fresh chunk, so its causal pairs are ``tokens**2 / 2``."""
BATCH = (0, 1, 8, 64, 256, 512)
"""Decoding sequences in the step."""
CONTEXT = (0, 128, 1250, 8192)
"""Tokens of context per decoding sequence."""
PERFS = [make_perf_model(kind, load_model(m), load_gpu(g), tp) for kind in PERF_MODELS for m, g, tp in CONFIGS]
"""Every configuration under every performance model (``roofline`` and ``tp-comm``)."""
IDS = [f"{kind}-{m}-{g}-tp{tp}" for kind in PERF_MODELS for m, g, tp in CONFIGS]


def _grid(perf: PerfModel) -> np.ndarray:
    """Step times indexed [prompt, batch, context per sequence]."""
    return np.array([[[perf.mixed_step_time(p, p * p / 2.0, b, b * c) for c in CONTEXT] for b in BATCH]
                     for p in PROMPT])


@pytest.mark.parametrize("perf", PERFS, ids=IDS)
def test_mixed_step_is_monotone_in_prompt_batch_and_context(perf: PerfModel) -> None:
    grid = _grid(perf)
    assert np.all(np.diff(grid, axis=0) >= 0), "adding prompt tokens made a step faster"
    assert np.all(np.diff(grid, axis=1) >= 0), "adding decode sequences made a step faster"
    assert np.all(np.diff(grid, axis=2) >= 0), "adding context made a step faster"
    assert grid[-1, -1, -1] > grid[1, 1, 0] > 0  # and it does grow


@pytest.mark.parametrize("perf", PERFS, ids=IDS)
def test_mixed_step_costs_at_least_each_part_and_at_most_their_sum(perf: PerfModel) -> None:
    for p, b, c in itertools.product(PROMPT[1:], BATCH[1:], CONTEXT):
        prefill, decode = perf.prefill_time(p, p * p / 2.0), perf.decode_step_time(b, b * c)
        mixed = perf.mixed_step_time(p, p * p / 2.0, b, b * c)
        assert max(prefill, decode) <= mixed <= prefill + decode, (p, b, c)
        assert mixed == pytest.approx(prefill + decode - perf.shared_step_s, rel=1e-12)
    assert 0 < perf.shared_step_s <= perf.decode_step_time(1, 0)


@pytest.mark.parametrize("perf", PERFS, ids=IDS)
def test_pure_prefill_and_pure_decode_are_exactly_their_own_step_times(perf: PerfModel) -> None:
    for p in PROMPT[1:]:
        assert perf.mixed_step_time(p, p * p / 2.0, 0, 0) == perf.prefill_time(p, p * p / 2.0)
    for b, c in itertools.product(BATCH, CONTEXT):
        assert perf.mixed_step_time(0, 0.0, b, b * c) == perf.decode_step_time(b, b * c)


def test_issue_example_prompt_tokens_no_longer_speed_up_a_decode_batch() -> None:
    # Issue 22: 256 sequences decoding cost 97 ms alone but 70 ms with 256 prompt tokens added
    # (Llama-3.1-70B on 4 H100s, ~1,250 tokens of context each).
    perf = PerfModel(load_model("llama-3.1-70b"), load_gpu("h100-sxm"), 4)
    alone = perf.decode_step_time(256, 256 * 1250)
    mixed = perf.mixed_step_time(256, 256 * 128, 256, 256 * 1250)
    assert alone == pytest.approx(0.097, abs=0.001)
    assert mixed >= alone + (perf.prefill_time(256, 256 * 128) - perf.shared_step_s) > alone
