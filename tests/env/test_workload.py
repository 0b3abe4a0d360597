"""Tests of ``env.workload``: arrival processes, lengths, determinism, validation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.trace import resolve_data_path
from disaggpilot.env.workload import (
    ArrivalSpec,
    LengthSpec,
    RateChange,
    RequestBatch,
    TenantSpec,
    TraceSpec,
    generate_requests,
    sample_arrivals,
    sample_lengths,
    tenants_from_config,
)


def arrivals(seed: int = 0, duration_s: float = 1000.0, **arrival: Any) -> np.ndarray:
    """Arrival times of one sampled tenant with the given ``ArrivalSpec`` fields."""
    return sample_arrivals(ArrivalSpec(**arrival), duration_s, np.random.default_rng(seed))


def tenant(name: str, **fields: Any) -> TenantSpec:
    return TenantSpec(name=name, **fields)


# ---- arrival processes ----------------------------------------------------------------------------------

def test_poisson_count_within_three_sigma() -> None:
    times = arrivals(rate_rps=10.0, duration_s=10_000.0)
    expected = 10.0 * 10_000.0
    assert abs(times.size - expected) < 3.0 * math.sqrt(expected)
    assert np.all(np.diff(times) >= 0) and times[0] >= 0 and times[-1] < 10_000.0


def test_poisson_gaps_are_exponential() -> None:
    gaps = np.diff(arrivals(rate_rps=10.0, duration_s=10_000.0))
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.02)


def test_gamma_interarrival_cv_close_to_target() -> None:
    times = arrivals(rate_rps=10.0, duration_s=20_000.0, process="gamma", cv=3.0)
    gaps = np.diff(times)
    assert 2.6 <= gaps.std() / gaps.mean() <= 3.4
    assert times.size == pytest.approx(200_000, rel=0.05)


MMPP = {"process": "mmpp", "mmpp_multipliers": [0.2, 5.0], "mmpp_dwell_s": [30.0, 6.0]}
"""Lulls of 30 s at a fifth of the rate, bursts of 6 s at five times it (before the mean is rescaled)."""


def window_count_cv(times: np.ndarray, window_s: float, duration_s: float) -> float:
    counts = np.histogram(times, bins=np.arange(0.0, duration_s + window_s, window_s))[0]
    return float(counts.std() / counts.mean())


def test_mmpp_keeps_the_mean_rate() -> None:
    times = arrivals(rate_rps=10.0, duration_s=50_000.0, **MMPP)
    # Lulls and bursts alternate with a cycle of ~36 s: ~1,400 cycles, so the mean is within a few per cent.
    assert times.size == pytest.approx(500_000, rel=0.05)
    assert np.all(np.diff(times) >= 0) and times[-1] < 50_000.0


def test_mmpp_is_bursty_over_seconds_where_poisson_is_not() -> None:
    modulated = arrivals(rate_rps=10.0, duration_s=20_000.0, **MMPP)
    poisson = arrivals(rate_rps=10.0, duration_s=20_000.0)
    # Per 10 s window Poisson's count CV is 1/sqrt(100) = 0.1; the modulation makes it several times that.
    assert window_count_cv(poisson, 10.0, 20_000.0) == pytest.approx(0.1, abs=0.02)
    assert window_count_cv(modulated, 10.0, 20_000.0) > 0.6


def test_mmpp_time_share_follows_the_dwells() -> None:
    # Burst share 6/36 at 5/(0.2*30/36 + 5*6/36) = 5.0 relative rate: the busiest sixth of windows carries
    # about 5 * 1/6 = 0.83 of the requests; a Poisson stream's busiest sixth carries little over 1/6.
    times = arrivals(rate_rps=10.0, duration_s=20_000.0, **MMPP)
    counts = np.sort(np.histogram(times, bins=np.arange(0.0, 20_001.0, 2.0))[0])[::-1]
    top_sixth = counts[: counts.size // 6].sum() / counts.sum()
    assert 0.6 < top_sixth < 0.9


def test_mmpp_is_reproducible_per_seed() -> None:
    first, again = arrivals(seed=3, **MMPP), arrivals(seed=3, **MMPP)
    assert np.array_equal(first, again) and not np.array_equal(first, arrivals(seed=4, **MMPP))


def test_diurnal_peak_half_has_more_arrivals() -> None:
    times = arrivals(rate_rps=10.0, duration_s=10_000.0, diurnal_amplitude=0.8, diurnal_period_s=1000.0)
    phase = np.mod(times, 1000.0)
    peak, trough = np.count_nonzero(phase < 500.0), np.count_nonzero(phase >= 500.0)
    expected_peak = 10 * 10.0 * (500.0 + 0.8 * 1000.0 / math.pi)
    assert peak > 2.0 * trough
    assert abs(peak - expected_peak) < 4.0 * math.sqrt(expected_peak)


def test_spike_multiplies_count_in_its_window() -> None:
    spike = {"start_s": 1000.0, "duration_s": 200.0, "multiplier": 5.0}
    times = arrivals(rate_rps=10.0, duration_s=3000.0, changes=[spike])
    inside = np.count_nonzero((times >= 1000.0) & (times < 1200.0))
    before = np.count_nonzero((times >= 600.0) & (times < 800.0))
    assert 4.4 <= inside / before <= 5.6


def test_step_changes_rate_for_the_rest_of_the_episode() -> None:
    times = arrivals(rate_rps=5.0, duration_s=4000.0, changes=[RateChange(start_s=2000.0, multiplier=3.0)])
    before, after = np.count_nonzero(times < 2000.0), np.count_nonzero(times >= 2000.0)
    assert after / before == pytest.approx(3.0, rel=0.08)


def test_zero_multiplier_silences_the_window() -> None:
    times = arrivals(rate_rps=10.0, duration_s=300.0, changes=[{"start_s": 100.0, "duration_s": 50.0,
                                                                  "multiplier": 0.0}])
    assert not np.any((times >= 100.0) & (times < 150.0))
    assert np.any(times >= 150.0)


def test_expected_requests_integrates_the_rate() -> None:
    spec = ArrivalSpec(rate_rps=2.0, changes=[RateChange(start_s=10.5, duration_s=20.0, multiplier=4.0)])
    assert spec.expected_requests(100.0) == pytest.approx(2.0 * 80.0 + 8.0 * 20.0)
    assert spec.rate_at(np.array([0.0, 10.5, 30.5])).tolist() == [2.0, 8.0, 2.0]


def test_zero_rate_gives_no_requests() -> None:
    assert arrivals(rate_rps=0.0).size == 0


# ---- lengths ------------------------------------------------------------------------------------------

def test_lognormal_means_within_five_percent() -> None:
    spec = LengthSpec(prompt_mean=1024.0, prompt_cv=1.0, output_mean=128.0, output_cv=2.0)
    prompt, output = sample_lengths(spec, 200_000, np.random.default_rng(3))
    assert prompt.mean() == pytest.approx(1024.0, rel=0.05)
    assert output.mean() == pytest.approx(128.0, rel=0.05)
    assert prompt.dtype == np.int64 and output.min() >= 1


def test_fixed_lengths_scale_and_clamp() -> None:
    spec = LengthSpec(kind="fixed", prompt_mean=1000.0, output_mean=100.0, scale=0.5, max_output_tokens=40)
    prompt, output = sample_lengths(spec, 5, np.random.default_rng(0))
    assert prompt.tolist() == [500] * 5 and output.tolist() == [40] * 5


def test_lengths_never_below_min_tokens() -> None:
    spec = LengthSpec(prompt_mean=3.0, prompt_cv=3.0, output_mean=2.0, output_cv=3.0, min_tokens=2)
    prompt, output = sample_lengths(spec, 10_000, np.random.default_rng(0))
    assert prompt.min() >= 2 and output.min() >= 2


@pytest.mark.parametrize("header", ["input_tokens,output_tokens", "ContextTokens,GeneratedTokens",
                                    "num_prefill_tokens,num_decode_tokens"])
def test_empirical_yields_only_pairs_from_the_file(tmp_path: Path, header: str) -> None:
    pairs = {(10, 1), (200, 30), (3000, 7), (45, 600)}
    path = tmp_path / "lengths.csv"
    path.write_text(header + "\n" + "\n".join(f"{a},{b}" for a, b in sorted(pairs)) + "\n")
    prompt, output = sample_lengths(LengthSpec(kind="empirical", path=str(path)), 2000,
                                    np.random.default_rng(0))
    assert set(zip(prompt.tolist(), output.tolist(), strict=True)) == pairs


@pytest.mark.parametrize(("name", "input_mean"), [("code", 2068.0), ("conv", 1138.4)])
def test_committed_azure_fixtures(name: str, input_mean: float) -> None:
    path = resolve_data_path(f"configs/workload/azure2023_{name}_lengths.csv")
    prompt, _ = sample_lengths(LengthSpec(kind="empirical", path=str(path)), 50_000, np.random.default_rng(1))
    assert prompt.mean() == pytest.approx(input_mean, rel=0.05)


# ---- the batch: merge, determinism, independence --------------------------------------------------------

TENANTS = [
    tenant("chat", arrival={"rate_rps": 5.0}),
    tenant("code", arrival={"process": "gamma", "rate_rps": 2.0, "cv": 4.0},
           lengths={"prompt_mean": 2000.0, "output_mean": 30.0}),
]


def test_batch_is_sorted_with_documented_dtypes() -> None:
    batch = generate_requests(TENANTS, 600.0, seed=1)
    assert isinstance(batch, RequestBatch) and batch.tenant_names == ("chat", "code")
    assert batch.arrival_s.dtype == np.float64 and batch.tenant.dtype == np.int32
    assert batch.prompt_tokens.dtype == np.int64 and batch.output_tokens.dtype == np.int64
    assert np.all(np.diff(batch.arrival_s) >= 0) and batch.arrival_s[-1] < 600.0
    assert set(np.unique(batch.tenant).tolist()) == {0, 1} and len(batch) == batch.tenant.size


def test_same_seed_identical_different_seed_differs() -> None:
    first, again, other = (generate_requests(TENANTS, 600.0, seed) for seed in (7, 7, 8))
    for name in ("arrival_s", "tenant", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert len(first) != len(other) or not np.array_equal(first.arrival_s, other.arrival_s)


def rows_of(batch: RequestBatch, name: str) -> np.ndarray:
    index = batch.tenant_names.index(name)
    keep = batch.tenant == index
    return np.column_stack([batch.arrival_s[keep], batch.prompt_tokens[keep], batch.output_tokens[keep]])


def test_adding_or_reordering_tenants_leaves_others_unchanged() -> None:
    alone = generate_requests(TENANTS[:1], 600.0, seed=3)
    together = generate_requests(TENANTS, 600.0, seed=3)
    swapped = generate_requests(TENANTS[::-1], 600.0, seed=3)
    np.testing.assert_array_equal(rows_of(alone, "chat"), rows_of(together, "chat"))
    np.testing.assert_array_equal(rows_of(together, "chat"), rows_of(swapped, "chat"))


def test_changing_lengths_keeps_arrival_times() -> None:
    longer = tenant("chat", arrival={"rate_rps": 5.0}, lengths={"prompt_mean": 4000.0})
    base, changed = generate_requests(TENANTS[:1], 300.0, 2), generate_requests([longer], 300.0, 2)
    np.testing.assert_array_equal(base.arrival_s, changed.arrival_s)


def test_trace_tenant_replays_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("timestamp_s,tenant,input_tokens,output_tokens\n"
                    "10,a,100,5\n11,b,200,6\n12,a,300,7\n500,a,400,8\n")
    replayed = tenant("a", trace=TraceSpec(path=str(path), rate_multiplier=2.0))
    batch = generate_requests([replayed, TENANTS[0]], 100.0, seed=0)
    np.testing.assert_array_equal(rows_of(batch, "a"), [[0.0, 100, 5], [1.0, 300, 7]])


def test_mappings_are_converted() -> None:
    raw: dict[str, Any] = {"name": "t", "lengths": {"kind": "fixed"}, "trace": {"path": "x.csv"},
                           "arrival": {"rate_rps": 3.0, "changes": [{"start_s": 5.0, "multiplier": 2.0}]}}
    spec = TenantSpec(**raw)
    assert isinstance(spec.arrival, ArrivalSpec) and isinstance(spec.arrival.changes[0], RateChange)
    assert isinstance(spec.lengths, LengthSpec) and isinstance(spec.trace, TraceSpec)
    tenants: list[Any] = [{"name": "m", "arrival": {"rate_rps": 1.0}}]
    assert generate_requests(tenants, 10.0, 0).tenant_names == ("m",)


# ---- validation -----------------------------------------------------------------------------------------

BAD_CONFIGS: list[tuple[type, dict[str, Any], str]] = [
    (RateChange, {"multiplier": -1.0}, "multiplier=-1.0"),
    (RateChange, {"duration_s": 0.0}, "duration_s=0.0"),
    (ArrivalSpec, {"rate_rps": -1.0}, "rate_rps=-1.0"),
    (ArrivalSpec, {"rate_rps": math.inf}, "rate_rps=inf"),
    (ArrivalSpec, {"process": "weibull"}, "process='weibull'"),
    (ArrivalSpec, {"process": "gamma", "cv": 0.0}, "cv=0.0"),
    (ArrivalSpec, {"diurnal_amplitude": 1.5}, "diurnal_amplitude=1.5"),
    (ArrivalSpec, {"process": "mmpp"}, "mmpp_dwell_s=[]"),
    (ArrivalSpec, {"process": "mmpp", "mmpp_multipliers": [1, 2], "mmpp_dwell_s": [1]}, "mmpp_dwell_s=[1.0]"),
    (ArrivalSpec, {"process": "mmpp", "mmpp_multipliers": [1, -2], "mmpp_dwell_s": [1, 1]},
     "mmpp_multipliers=[1, -2]"),
    (ArrivalSpec, {"mmpp_multipliers": [1, 2], "mmpp_dwell_s": [1, 1]}, "mmpp_multipliers=[1.0, 2.0]"),
    (ArrivalSpec, {"changes": [{}, {"start_s": -5.0}]}, "changes[1].start_s=-5.0"),
    (LengthSpec, {"kind": "empirical"}, "path=None"),
    (LengthSpec, {"kind": "uniform"}, "kind='uniform'"),
    (LengthSpec, {"prompt_mean": 0.0}, "prompt_mean=0.0"),
    (LengthSpec, {"min_tokens": 10, "max_output_tokens": 5}, "max_output_tokens=5"),
    (LengthSpec, {"min_tokens": 1.5}, "min_tokens=1.5"),
    (TraceSpec, {"path": ""}, "path=''"),
    (TraceSpec, {"path": "t.csv", "rate_multiplier": 0.0}, "rate_multiplier=0.0"),
    (TraceSpec, {"path": "t.csv", "start_s": 10.0, "end_s": 5.0}, "end_s=5.0"),
    (TraceSpec, {"path": "t.csv", "format": "parquet"}, "format='parquet'"),
    (TenantSpec, {"ttft_slo_s": 0.0}, "ttft_slo_s=0.0"),
    (TenantSpec, {"attainment_target": 1.5}, "attainment_target=1.5"),
    (TenantSpec, {"name": ""}, "name=''"),
    (TenantSpec, {"arrival": {"rate_rps": "fast"}}, "arrival.rate_rps='fast'"),
    (TenantSpec, {"lengths": {"prompt_cv": -1}}, "lengths.prompt_cv=-1"),
    (TenantSpec, {"arrival": {"rate": 3.0}}, "arrival.rate=3.0"),
    (TenantSpec, {"trace": 5}, "trace=5"),
]


@pytest.mark.parametrize(("cls", "kwargs", "key"), BAD_CONFIGS)
def test_bad_config_names_the_field(cls: type, kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cls(**kwargs)
    assert str(caught.value).startswith(key) and "invalid" in str(caught.value)


def test_nested_errors_name_the_tenant_index() -> None:
    raw: list[Any] = [{"name": "a"}, {"name": "b", "arrival": {"rate_rps": -2.0}}]
    with pytest.raises(ConfigError, match=r"^tenants\[1\]\.arrival\.rate_rps=-2\.0 is invalid: use"):
        tenants_from_config(raw)


@pytest.mark.parametrize(("tenants", "duration_s", "seed", "key"), [
    ([TenantSpec(name="a"), TenantSpec(name="a")], 10.0, 0, "tenants[1].name='a'"),
    ([], 10.0, 0, "tenants=[]"),
    ([TenantSpec()], 0.0, 0, "duration_s=0.0"),
    ([TenantSpec()], 10.0, -1, "seed=-1"),
])
def test_bad_generate_arguments(tenants: list[TenantSpec], duration_s: float, seed: int, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        generate_requests(tenants, duration_s, seed)
    assert str(caught.value).startswith(key)


def test_poisson_with_cv_warns() -> None:
    with pytest.warns(UserWarning, match="cv=3"):
        ArrivalSpec(cv=3.0)
