"""Proof "Sim against emulator": one scenario and static cluster give the same p50 TTFT and TPOT (within 15%)
on the simulator and on emulated replicas behind the gateway (``benchmarks/sim_vs_emulator.py`` runs both).

The rig runs at real GPU time (``time_scale`` 1): the HTTP hops through the gateway cost a few tens of
wall milliseconds per request on this machine, which a faster time scale would magnify in GPU seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.env.live.conftest import requires_prometheus

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "sim_vs_emulator.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_vs_emulator", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@requires_prometheus
@pytest.mark.slow
def test_the_simulator_and_the_emulated_rig_agree_on_median_latencies(tmp_path: Path) -> None:
    benchmark = load_benchmark()
    result = benchmark.compare(1.0, tmp_path)
    print("\n" + benchmark.table(result))
    sim, emulated, difference = result["simulator"], result["emulator"], result["difference"]
    assert sim["requests"] == emulated["requests"] > 50  # the same requests on both sides, all finished
    for key in ("ttft_p50_s", "tpot_p50_s", "hist_ttft_p50_s", "hist_tpot_p50_s"):
        assert abs(difference[key]) <= 0.15, (key, sim[key], emulated[key])
    assert 0.2 < sim["ttft_p50_s"] < 2.0 and 0.01 < sim["tpot_p50_s"] < 0.1  # a real-looking 70B TP4 load
