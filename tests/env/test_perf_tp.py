"""The ``tp-comm`` performance model (env.perf_tp): its terms, its roofline bound and its selection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from disaggpilot.env.catalog import configs_dir, load_gpu, load_model
from disaggpilot.env.errors import CatalogError, ConfigError
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.perf_tp import TpPerfModel, make_perf_model
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.tp_calibration import TpCalibration

MODEL = load_model("llama-2-70b")


def test_default_name_builds_todays_model_bit_identically() -> None:
    gpu = load_gpu("h100-sxm")
    old, new = PerfModel(MODEL, gpu, 4), make_perf_model("roofline", MODEL, gpu, 4)
    assert type(new) is PerfModel
    assert new.prefill_time(8192, 8192**2 / 2) == old.prefill_time(8192, 8192**2 / 2)
    assert new.decode_step_time(64, 64 * 1000) == old.decode_step_time(64, 64 * 1000)
    assert ScenarioConfig().perf_model == "roofline"


def test_unknown_model_name_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"perf_model='fast'.*roofline.*tp-comm"):
        make_perf_model("fast", MODEL, load_gpu("h100-sxm"), 2)
    with pytest.raises(ConfigError, match=r"scenario\.perf_model"):
        ScenarioConfig(perf_model="fast")


def test_gpu_without_tp_calibration_is_refused() -> None:
    gpu = dataclasses.replace(load_gpu("h100-sxm"), tp_calibration=None)
    with pytest.raises(ConfigError, match="no tp_calibration"):
        TpPerfModel(MODEL, gpu, 4)


@pytest.mark.parametrize(("name", "value"), [("attention_efficiency", 1.2), ("comm_overlap", -0.1),
                                             ("allreduce_half_bytes", -1.0), ("cross_sequence_pair_fraction", 1.1),
                                             ("attention_tp_exponent", 1.5)])
def test_calibration_rejects_out_of_range_values(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"tp_calibration.{name}"):
        TpCalibration(**{name: value})


@pytest.mark.parametrize("gpu_name", ["a100-80gb", "h100-sxm", "h200", "b200", "l40s"])
@pytest.mark.parametrize("tp", [4, 8])
def test_times_never_beat_the_roofline(gpu_name: str, tp: int) -> None:
    perf = TpPerfModel(MODEL, load_gpu(gpu_name), tp)
    for tokens in (1, 128, 2048, 16384):
        pairs = tokens * tokens / 2
        assert perf.prefill_time(tokens, pairs) >= perf.roofline_prefill_time(tokens, pairs)
    for batch, context in ((1, 100), (64, 64 * 2000), (512, 512 * 8000)):
        assert perf.decode_step_time(batch, context) >= perf.roofline_decode_time(batch, context)


def test_communication_is_its_own_term_with_bounded_overlap() -> None:
    gpu = load_gpu("a100-80gb")
    cal = gpu.tp_calibration
    assert cal is not None
    hidden = dataclasses.replace(gpu, tp_calibration=dataclasses.replace(cal, comm_overlap=1.0))
    exposed = dataclasses.replace(gpu, tp_calibration=dataclasses.replace(cal, comm_overlap=0.0))
    tokens = 8192.0
    full, none = TpPerfModel(MODEL, hidden, 8), TpPerfModel(MODEL, exposed, 8)
    comm_s = none.allreduce_time(tokens) - none.allreduce_time(0.0)
    # Full overlap hides exactly the bandwidth time here (the linear layers take longer than it); latency stays.
    assert none.prefill_time(tokens) - full.prefill_time(tokens) == pytest.approx(comm_s, rel=1e-9)
    assert TpPerfModel(load_model("llama-3.1-8b"), exposed, 1).allreduce_time(tokens) == 0.0
    # Ring traffic 2(n-1)/n: TP 8 moves 1.75/1.5 of TP 4's bytes per GPU.
    per_token = {tp: TpPerfModel(MODEL, exposed, tp).allreduce_time(1.0) - TpPerfModel(MODEL, exposed, tp)
                 .allreduce_time(0.0) for tp in (4, 8)}
    assert per_token[8] / per_token[4] == pytest.approx(1.75 / 1.5)


def test_prefill_attention_is_quadratic_and_decode_kv_read_is_linear() -> None:
    perf = TpPerfModel(MODEL, load_gpu("h100-sxm"), 4)
    # Above the latency floor, each 4e8 causal pairs (a ~28k-token prompt) add the same time: linear in
    # pairs, so quadratic in a prompt's length.
    first, second = (perf.prefill_time(0.0, pairs + 4e8) - perf.prefill_time(0.0, pairs) for pairs in (4e8, 8e8))
    assert first > 0 and second == pytest.approx(first)
    assert perf.decode_step_time(8, 2e5) - perf.decode_step_time(8, 1e5) == pytest.approx(
        perf.decode_step_time(8, 1e5) - perf.decode_step_time(8, 0.0))


def test_allreduce_latency_grows_with_log2_tp_and_shrinks_with_link_bandwidth() -> None:
    gpu = load_gpu("h100-sxm")
    latency = {tp: TpPerfModel(MODEL, gpu, tp).allreduce_time(0.0) for tp in (4, 8)}
    assert latency[8] / latency[4] == pytest.approx(3 / 2)  # log2(8) / log2(4)
    slow = dataclasses.replace(gpu, intra_node_gbps=gpu.intra_node_gbps / 2)
    assert TpPerfModel(MODEL, slow, 8).allreduce_time(0.0) == pytest.approx(2 * latency[8])  # Hockney n_1/2


def test_catalog_names_the_file_of_an_out_of_range_tp_calibration(tmp_path: Path) -> None:
    text = (configs_dir() / "hardware" / "h100-sxm.yaml").read_text()
    bad = tmp_path / "fast.yaml"
    bad.write_text(text.replace("  comm_overlap:", "  comm_overlap: 1.5 #"))
    with pytest.raises(ConfigError, match=rf"{bad}.*tp_calibration\.comm_overlap"):
        load_gpu(bad)
    bad.write_text(text.replace("  comm_overlap:", "  # comm_overlap:"))
    with pytest.raises(CatalogError, match=r"'tp_calibration\.comm_overlap' is missing"):
        load_gpu(bad)


def _with_fraction(gpu_name: str, fraction: float) -> TpPerfModel:
    gpu = load_gpu(gpu_name)
    assert gpu.tp_calibration is not None
    cal = dataclasses.replace(gpu.tp_calibration, cross_sequence_pair_fraction=fraction)
    return TpPerfModel(MODEL, dataclasses.replace(gpu, tp_calibration=cal), 8)


def test_masked_cross_sequence_pairs_make_a_batch_cost_like_one_prompt_of_its_tokens() -> None:
    batch, prompt = 16, 512
    tokens = batch * prompt
    own_pairs, one_sequence = batch * prompt * prompt / 2, tokens * tokens / 2
    per_sequence, masked = _with_fraction("a100-80gb", 0.0), _with_fraction("a100-80gb", 1.0)
    # Fraction 1: the batch attends as one masked sequence of its tokens, so it costs exactly that prompt.
    assert masked.prefill_time(tokens, own_pairs) == pytest.approx(masked.prefill_time(tokens, one_sequence))
    # Fraction 0: only each sequence's own pairs, so the batch is cheaper than one long prompt.
    assert per_sequence.prefill_time(tokens, own_pairs) < per_sequence.prefill_time(tokens, one_sequence)
    # One sequence's chunk (its pairs >= tokens**2 / 2) pays nothing extra, whatever the fraction.
    chunk, offset = 2048, 4096
    pairs = chunk * (offset + chunk / 2)
    assert masked.prefill_time(chunk, pairs) == per_sequence.prefill_time(chunk, pairs)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_prefill_never_falls_as_tokens_or_pairs_grow(fraction: float) -> None:
    perf = _with_fraction("a100-80gb", fraction)
    grid = [0.0, 1.0, 512.0, 4096.0, 32768.0]
    for tokens in grid:
        times = [perf.prefill_time(tokens, tokens * tokens * share) for share in (0.0, 0.1, 0.5, 1.0, 4.0)]
        assert times == sorted(times), (tokens, times)
    for share in (0.0, 0.1, 0.5):
        times = [perf.prefill_time(tokens, tokens * tokens * share) for tokens in grid]
        assert times == sorted(times), (share, times)


def test_fitted_cross_sequence_fraction_is_a100s_batch_penalty() -> None:
    # Splitwise's A100 batches run slower than one prompt of their tokens, its H100 batches faster, so the
    # fit charges A100 more of the masked pairs than H100 (docs/experiments/2026-12-07-tp-model.md).
    a100, h100 = (load_gpu(name).tp_calibration for name in ("a100-80gb", "h100-sxm"))
    assert a100 is not None and h100 is not None
    assert a100.cross_sequence_pair_fraction > 0.5 > h100.cross_sequence_pair_fraction


@pytest.mark.parametrize(("exponent", "ratio"), [(0.0, 0.5), (0.5, 2**-0.5), (1.0, 1.0)])
def test_attention_tp_exponent_sets_how_attention_shrinks_with_tp(exponent: float, ratio: float) -> None:
    gpu = load_gpu("h100-sxm")
    assert gpu.tp_calibration is not None
    cal = dataclasses.replace(gpu.tp_calibration, attention_tp_exponent=exponent)
    # Attention's share of a step: the time 4e8 more causal pairs add above the floor, at TP 4 and TP 8.
    added = [perf.prefill_time(0.0, 8e8) - perf.prefill_time(0.0, 4e8) for perf in
             (TpPerfModel(MODEL, dataclasses.replace(gpu, tp_calibration=cal), tp) for tp in (4, 8))]
    assert added[0] > 0 and added[1] / added[0] == pytest.approx(ratio)
