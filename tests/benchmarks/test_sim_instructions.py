"""``benchmarks/sim_instructions.py``: the counted workloads run, and valgrind's summary is read or refused."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "sim_instructions.py"
SUMMARY = """==4242== Cachegrind, a high-precision tracing profiler
==4242==
==4242== I   refs:      6,648,940,890
"""


@pytest.fixture
def benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("sim_instructions")


def test_the_instruction_total_is_read_from_cachegrinds_summary(benchmark: ModuleType) -> None:
    assert benchmark.instruction_refs(SUMMARY) == 6_648_940_890
    with pytest.raises(ValueError, match=r"no 'I refs:' line.*cachegrind"):
        benchmark.instruction_refs("==4242== Memcheck, a memory error detector\n")


def test_the_figure_is_sim_speeds_unit_from_the_two_counts(benchmark: ModuleType) -> None:
    counts = benchmark.Counts(per_request=173_000.0, per_operation=7_000.0, requests=28_185)
    assert counts.requests_per_1000_operations == pytest.approx(1000 * 7_000 / 173_000)


def child_requests(mode: str) -> int:
    """What a counted run prints, run plainly (no valgrind) on two simulated minutes."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--child", mode, "--duration-s", "120"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


def test_only_the_simulate_run_advances_the_clock() -> None:
    # The warm-up run loads the traces and stops: subtracting it leaves the simulation alone.
    assert child_requests("warmup") == 0
    assert child_requests("simulate") > 100


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (Debian: valgrind)")
def test_under_valgrind_a_short_run_counts_fewer_instructions_per_request_than_a_yardstick_thousand(
        benchmark: ModuleType) -> None:
    counts = benchmark.measure(sys.executable, 120.0)
    # A simulated request costs tens of yardstick operations (about 25 on the hour-long reference).
    assert 5 * counts.per_operation < counts.per_request < 1000 * counts.per_operation
