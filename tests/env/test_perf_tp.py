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
                                             ("allreduce_half_bytes", -1.0)])
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
