"""PrometheusSource against a real Prometheus scraping recorded vLLM expositions and a synthetic gateway."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from disaggpilot.controller.validate import MISSING as VALIDATE_MISSING
from disaggpilot.controller.validate import NAN as VALIDATE_NAN
from disaggpilot.controller.validate import STALE as VALIDATE_STALE
from disaggpilot.controller.validate import validate_snapshot
from disaggpilot.env.errors import TemporaryError
from disaggpilot.env.live.config import PrometheusSourceConfig
from disaggpilot.env.live.errors import MetricsFormatError, PrometheusUnavailableError, SelectorMatchesNothingError
from disaggpilot.env.live.source import MISSING, NAN, OUT_OF_RANGE, STALE, PrometheusSource, Reading
from disaggpilot.env.metrics import (
    E2E,
    GENERATION_TOKENS,
    GW_ARRIVED,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_IN_FLIGHT,
    GW_PROMPT_TOKENS,
    GW_TPOT,
    GW_TTFT,
    ITL,
    KV_USAGE,
    PREEMPTIONS,
    PREFIX_CACHE_HITS,
    PREFIX_CACHE_QUERIES,
    PROMPT_TOKENS,
    REQUEST_SUCCESS,
    RUNNING,
    TPOT,
    TTFT,
    WAITING,
    Histogram,
)
from disaggpilot.localcluster.prometheus_server import free_port
from tests.env.live.conftest import SCRAPE_S, TENANTS, Rig, recorded_histogram, recorded_value

WINDOW_S = 2.0


def read_window(rig: Rig, source: PrometheusSource) -> tuple[Reading, float]:
    """A reading over the last ``WINDOW_S`` seconds, once that much data exists; returns it and the window."""
    rig.wait_for_history(WINDOW_S + 2 * SCRAPE_S)
    end = time.time()
    return source.read(end - WINDOW_S, end, origin=end - 10.0), WINDOW_S


def assert_same_shape(got: Histogram, expected: Histogram, tolerance: float = 1e-6) -> None:
    """Same distribution over the buckets (counts scaled by the window) and the same quantiles. Replicas scraped
    at different instants get slightly different ``increase`` extrapolations: merged ones need a tolerance."""
    assert got.edges == expected.edges
    assert got.count > 0
    np.testing.assert_allclose(got.counts / got.count, expected.counts / expected.count, atol=tolerance)
    for q in (0.5, 0.9, 0.99):
        assert got.quantile(q) == pytest.approx(expected.quantile(q), rel=tolerance)


def merged(*histograms: Histogram) -> Histogram:
    total = histograms[0].copy()
    for other in histograms[1:]:
        total.merge(other)
    return total


# ----- current vLLM names --------------------------------------------------------------------------------------
def test_pools_replicas_gauges_counters_and_histograms_match_what_was_served(rig: Rig) -> None:
    reading, window = read_window(rig, PrometheusSource(rig.source_config()))
    assert reading.issues == []
    prefill, decode = reading.snapshot.pools["prefill"], reading.snapshot.pools["decode"]
    assert (prefill.replicas_ready, prefill.replicas_starting, decode.replicas_ready) == (2, 1, 1)
    # gauges: summed over replicas, KV usage their mean (the P/D prefill replica is idle, the other loaded)
    under_load = rig.texts["under_load"]
    assert prefill.gauges[RUNNING] == recorded_value(under_load, RUNNING) == 100.0
    assert prefill.gauges[WAITING] == 0.0
    assert prefill.gauges[KV_USAGE] == pytest.approx(recorded_value(under_load, KV_USAGE) / 2)
    # counters grow by the recorded value per second on each replica: increase = recorded x window
    expected_prompt = recorded_value(rig.texts["prefill"], PROMPT_TOKENS) + recorded_value(under_load, PROMPT_TOKENS)
    assert prefill.counters[PROMPT_TOKENS] == pytest.approx(expected_prompt * window, rel=0.1)
    ratio = decode.counters[GENERATION_TOKENS] / decode.counters[PROMPT_TOKENS]
    assert ratio == pytest.approx(1300.0 / 12300.0, rel=1e-6)  # the decode recording's token counts
    assert decode.counters[REQUEST_SUCCESS] / decode.counters[PROMPT_TOKENS] == pytest.approx(41 / 12300, rel=1e-6)
    assert decode.counters[PREEMPTIONS] == 0.0
    # vLLM v1's prefix-cache counters (tokens): the P/D prefill recording hit 256 of 12,600, the others nothing
    assert decode.counters[PREFIX_CACHE_QUERIES] / decode.counters[PROMPT_TOKENS] == pytest.approx(1.0, rel=1e-6)
    assert decode.counters[PREFIX_CACHE_HITS] == 0.0
    hits, queries = (recorded_value(rig.texts["prefill"], name) + recorded_value(under_load, name)
                     for name in (PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES))
    assert hits == 256.0
    assert prefill.counters[PREFIX_CACHE_HITS] / prefill.counters[PREFIX_CACHE_QUERIES] == pytest.approx(hits / queries,
                                                                                                        rel=0.1)
    for name in (TTFT, E2E):
        expected = merged(recorded_histogram(rig.texts["prefill"], name), recorded_histogram(under_load, name))
        assert_same_shape(prefill.histograms[name], expected, tolerance=0.05)
    for name in (ITL, TPOT):
        assert_same_shape(decode.histograms[name], recorded_histogram(rig.texts["decode"], name))
    ttft = decode.histograms[TTFT]
    assert ttft.total / ttft.count == pytest.approx(2.0120747089385986 / 41, rel=1e-6)  # recorded mean TTFT


def test_tenants_counters_histograms_and_attainment_match_the_gateway(rig: Rig) -> None:
    reading, window = read_window(rig, PrometheusSource(rig.source_config(), tenants=("code", "conv")))
    tenants = reading.snapshot.tenants
    assert sorted(tenants) == ["code", "conv"]
    code, conv = tenants["code"], tenants["conv"]
    assert code.attainment() == pytest.approx(0.75, rel=1e-6)
    assert conv.attainment() == pytest.approx(1.0)
    assert code.counters[GW_ARRIVED] == pytest.approx(4.0 * window, rel=0.1)
    assert code.counters[GW_PROMPT_TOKENS] / code.counters[GW_ARRIVED] == pytest.approx(2000.0, rel=1e-6)
    assert code.goodput_tokens() / code.counters[GW_GOODPUT_PROMPT_TOKENS] == pytest.approx(6075 / 6000, rel=1e-6)
    assert (code.in_flight, conv.in_flight) == (7, 3)
    for name, tenant in ((GW_TTFT, "code"), (GW_TPOT, "code"), (GW_TTFT, "conv")):
        assert_same_shape(tenants[tenant].histograms[name], TENANTS[tenant].histogram(name))


def test_reset_reading_has_gauges_and_zero_interval(rig: Rig) -> None:
    now = time.time()
    snapshot = PrometheusSource(rig.source_config()).read(now, now, origin=now).snapshot
    assert (snapshot.start_s, snapshot.end_s) == (0.0, 0.0)
    assert snapshot.pools["prefill"].gauges[RUNNING] == 100.0
    assert snapshot.pools["prefill"].counters[PROMPT_TOKENS] == 0.0
    assert snapshot.tenants["code"].in_flight == 7


# ----- older vLLM names ----------------------------------------------------------------------------------------
def test_older_vllm_names_are_read(rig: Rig) -> None:
    config = rig.source_config(prefill='pool="prefill",vllm="old"', decode='pool="decode",vllm="old"')
    reading, _ = read_window(rig, PrometheusSource(config))
    assert reading.issues == []
    decode = reading.snapshot.pools["decode"]
    assert decode.gauges[KV_USAGE] == 0.0  # from vllm:gpu_cache_usage_perc
    itl = recorded_histogram(rig.texts["decode"], ITL)
    assert_same_shape(decode.histograms[ITL], itl)  # from vllm:time_per_output_token_seconds
    assert_same_shape(decode.histograms[TPOT], itl)  # no per-request TPOT before 0.11: the per-token one


def test_a_pool_mixing_vllm_versions_counts_every_replica_once(rig: Rig) -> None:
    config = rig.source_config(prefill='pool="prefill",vllm="old"', decode='pool="decode",vllm=~"current|old"')
    reading, _ = read_window(rig, PrometheusSource(config))
    decode = reading.snapshot.pools["decode"]
    assert decode.replicas_ready == 2
    single = PrometheusSource(rig.source_config()).read(time.time() - WINDOW_S, time.time()).snapshot
    assert decode.histograms[ITL].count == pytest.approx(2 * single.pools["decode"].histograms[ITL].count, rel=0.25)


# ----- data problems: reported where the controller looks ------------------------------------------------------
def test_nan_and_out_of_range_values_are_passed_through_and_listed(rig: Rig) -> None:
    config = rig.source_config(decode='pool="decode",vllm="odd"')
    now = time.time()
    reading = PrometheusSource(config).read(now, now, origin=now)
    decode = reading.snapshot.pools["decode"]
    assert math.isnan(decode.gauges[WAITING]) and decode.gauges[KV_USAGE] == 1.5
    kinds = {(issue.kind, issue.where) for issue in reading.issues}
    assert kinds == {(NAN, f"pool decode {WAITING}"), (OUT_OF_RANGE, f"pool decode {KV_USAGE}")}
    problem = validate_snapshot(reading.snapshot, 0.0, 90.0, ["decode"], [])
    assert problem is not None and problem.reason == VALIDATE_NAN and WAITING in problem.detail


def test_a_selector_matching_nothing_is_a_missing_pool_after_start_and_an_error_at_start(rig: Rig) -> None:
    source = PrometheusSource(rig.source_config(prefill='pool="prefill",vllm="current"', decode='pool="nothing"'),
                              tenants=("code", "ghost"))
    now = time.time()
    reading = source.read(now, now, origin=now)
    assert "decode" not in reading.snapshot.pools and "ghost" not in reading.snapshot.tenants
    assert {(i.kind, i.where) for i in reading.issues} == {(MISSING, "pool decode"), (MISSING, "tenant ghost")}
    problem = validate_snapshot(reading.snapshot, 0.0, 90.0, ["prefill", "decode"], ["code"])
    assert problem is not None and problem.reason == VALIDATE_MISSING and "pool decode" in problem.detail
    with pytest.raises(SelectorMatchesNothingError, match=r"live\.prometheus\.pools\.decode \(pool=\"nothing\"\)"):
        source.check_targets(now)
    PrometheusSource(rig.source_config()).check_targets(now)  # the right selectors pass


def test_stale_data_moves_the_snapshot_end_back_so_validation_sees_its_age(rig: Rig) -> None:
    reading, _ = read_window(rig, PrometheusSource(rig.source_config(gateway_selector='job="gateway_stale"')))
    end = time.time()
    assert (STALE, "gateway") in {(i.kind, i.where) for i in reading.issues}
    # The stale gateway stamps its samples 120 s before each scrape (conftest); scrapes come every SCRAPE_S.
    assert reading.data_age_s["gateway"] == pytest.approx(120.0, abs=5.0)
    assert reading.data_age_s["gateway"] <= end - rig.start + 125.0
    snapshot = reading.snapshot
    assert snapshot.end_s < snapshot.start_s + 1e-9 and snapshot.end_s < -100.0  # origin was 10 s before the end
    problem = validate_snapshot(snapshot, 10.0, 90.0, ["prefill", "decode"], [])
    assert problem is not None and problem.reason == VALIDATE_STALE
    assert reading.snapshot.tenants["code"].in_flight == 7  # the gauge is still there, just old


def test_a_missing_tenant_counter_is_nan_not_zero(rig: Rig) -> None:
    reading, _ = read_window(rig, PrometheusSource(rig.source_config(gateway_selector='job="gateway_stale"')))
    code = reading.snapshot.tenants["code"]
    assert math.isnan(code.counters[GW_ARRIVED]) and math.isnan(code.histograms[GW_TTFT].total)
    assert (MISSING, f"tenant code {GW_ARRIVED}") in {(i.kind, i.where) for i in reading.issues}
    assert (MISSING, f"tenant code {GW_IN_FLIGHT}") not in {(i.kind, i.where) for i in reading.issues}


# ----- errors --------------------------------------------------------------------------------------------------
def test_buckets_other_than_the_contracts_are_a_clear_error(rig: Rig) -> None:
    config = rig.source_config(prefill='pool="prefill",vllm="bad_buckets"', decode='pool="decode",vllm="current"')
    rig.wait_for_history(WINDOW_S + 2 * SCRAPE_S)
    with pytest.raises(MetricsFormatError, match=r"pool prefill vllm:time_to_first_token_seconds: no bucket for "
                                                 r"le=\[0\.001\].*env\.metrics\.BUCKETS"):
        PrometheusSource(config).read(time.time() - WINDOW_S, time.time())


def test_prometheus_down_is_a_retryable_error() -> None:
    config = PrometheusSourceConfig(url=f"http://127.0.0.1:{free_port()}", timeout_s=1.0, retry_delay_s=3.0)
    with pytest.raises(PrometheusUnavailableError, match="did not answer") as caught:
        PrometheusSource(config).read(time.time() - 30, time.time())
    assert isinstance(caught.value, TemporaryError) and caught.value.delay_s == 3.0
