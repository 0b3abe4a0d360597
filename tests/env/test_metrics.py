"""``env.metrics``: ``Histogram.rescaled`` (the same observations in another time unit, on the contract's edges)
and the one judgement of a request (TPOT, met or missed, goodput tokens) that every backend shares."""

from __future__ import annotations

import inspect
import math
import re
from types import ModuleType
from typing import NamedTuple

import numpy as np
import pytest

import disaggpilot.env.sim.cluster as sim_cluster
import disaggpilot.env.sim.replica as sim_replica
import disaggpilot.localcluster.emulator.metrics as emulator_metrics
import disaggpilot.localcluster.gateway.metrics as gateway_metrics
import disaggpilot.localcluster.loadgen as loadgen
from disaggpilot.env.metrics import (
    DEFAULT_TPOT_SLO_S,
    DEFAULT_TTFT_SLO_S,
    GW_GOODPUT_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_MET,
    GW_MISSED,
    GW_TPOT,
    MISSED,
    TPOT,
    TTFT_BUCKETS,
    Histogram,
    Judgement,
    TenantMetrics,
    judge,
    tpot_s,
    waited_past_ttft,
)
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.sim.request import Request
from disaggpilot.env.workload import RequestBatch, TenantSpec
from disaggpilot.localcluster.emulator.engine import EngineRequest
from disaggpilot.localcluster.emulator.metrics import ReplicaMetrics
from disaggpilot.localcluster.gateway.config import TenantConfig
from disaggpilot.localcluster.gateway.metrics import GatewayMetrics
from disaggpilot.localcluster.loadgen import RequestResult, tenant_metrics
from disaggpilot.localcluster.rig_config import scaled_scenario


def lognormal_histogram(count: int = 20_000, seed: int = 0) -> tuple[Histogram, np.ndarray]:
    values = np.random.default_rng(seed).lognormal(mean=-1.0, sigma=0.8, size=count)
    histogram = Histogram.empty(TTFT_BUCKETS)
    for value in values:
        histogram.observe(float(value))
    return histogram, values


def test_rescaling_by_one_changes_nothing() -> None:
    histogram, _ = lognormal_histogram()
    same = histogram.rescaled(1.0)
    assert np.array_equal(same.counts, histogram.counts) and same.total == histogram.total


def test_rescaling_keeps_the_count_scales_the_sum_and_tracks_the_scaled_observations() -> None:
    histogram, values = lognormal_histogram()
    stretched = histogram.rescaled(4.0)
    direct = Histogram.empty(TTFT_BUCKETS)
    for value in values * 4.0:
        direct.observe(float(value))
    assert stretched.count == pytest.approx(histogram.count) and (stretched.counts >= 0).all()
    assert stretched.total == pytest.approx(histogram.total * 4.0)
    for q in (0.5, 0.9, 0.99):
        # Within the bucket interpolation both sides make: 10% on these edges.
        assert stretched.quantile(q) == pytest.approx(direct.quantile(q), rel=0.10)


def test_edges_that_scale_onto_edges_move_their_counts_exactly() -> None:
    histogram = Histogram.empty(TTFT_BUCKETS)
    histogram.observe(0.01, weight=5)   # le=0.01 -> x2 lands on le=0.02
    histogram.observe(0.02, weight=3)   # le=0.02 -> x2 lands on le=0.04
    stretched = histogram.rescaled(2.0)
    assert stretched.counts[TTFT_BUCKETS.index(0.02)] == pytest.approx(5)
    assert stretched.counts[TTFT_BUCKETS.index(0.04)] == pytest.approx(3)


def test_mass_beyond_the_last_finite_edge_stays_in_inf() -> None:
    histogram = Histogram.empty(TTFT_BUCKETS)
    histogram.observe(5000.0, weight=7)
    assert histogram.rescaled(0.25).counts[-1] == 7  # +Inf says nothing of where its mass lies


def test_unknown_counts_stay_unknown_and_bad_factors_are_refused() -> None:
    unknown = Histogram.empty(TTFT_BUCKETS)
    unknown.counts[:], unknown.total = np.nan, np.nan
    assert np.isnan(unknown.rescaled(4.0).counts).all()
    for factor in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="factor"):
            unknown.rescaled(factor)


# --- judging one request ------------------------------------------------------------------------------------
# Objectives and latencies that are exact in binary, so "at the objective" is exactly at it.
SPEC = TenantSpec(name="chat", ttft_slo_s=1.0, tpot_slo_s=0.125)


def test_tpot_is_the_time_after_the_first_token_over_the_tokens_that_followed() -> None:
    assert tpot_s(0.5, 1.5, 9) == 0.125
    arrival, first, last = 10.0, 10.75, 12.25  # the same request on an absolute clock: (e2e - TTFT) / (n - 1)
    assert tpot_s(first, last, 4) == pytest.approx(((last - arrival) - (first - arrival)) / 3)


@pytest.mark.parametrize("output_tokens", [1, 0])
def test_one_or_no_output_token_has_no_tpot_and_is_judged_on_ttft_alone(output_tokens: int) -> None:
    assert tpot_s(0.5, 9.0, output_tokens) == 0.0
    assert judge(1.0, tpot_s(1.0, 9.0, output_tokens), 100, output_tokens, SPEC).met
    assert not judge(1.25, tpot_s(1.25, 9.0, output_tokens), 100, output_tokens, SPEC).met


def test_met_only_within_both_objectives_bounds_included() -> None:
    assert judge(1.0, 0.125, 10, 5, SPEC) == Judgement(True, 10, 5)
    assert judge(math.nextafter(1.0, 2.0), 0.125, 10, 5, SPEC) == MISSED
    assert judge(1.0, math.nextafter(0.125, 1.0), 10, 5, SPEC) == MISSED


def test_met_earns_prompt_and_output_tokens_missed_earns_nothing() -> None:
    assert judge(0.5, 0.1, 300, 40, SPEC).goodput_tokens == 340
    missed = judge(0.5, 0.5, 300, 40, SPEC)
    assert (missed.met, missed.goodput_prompt_tokens, missed.goodput_output_tokens) == (False, 0, 0)
    assert MISSED.goodput_tokens == 0 and not MISSED.met


def test_no_first_token_is_a_miss() -> None:
    assert judge(math.nan, 0.0, 10, 1, SPEC) == MISSED  # a stream that never showed a token
    assert judge(0.5, math.nan, 10, 5, SPEC) == MISSED


def test_a_waiting_request_is_late_only_strictly_past_its_ttft_objective() -> None:
    assert not waited_past_ttft(1.0, SPEC)
    assert waited_past_ttft(math.nextafter(1.0, 2.0), SPEC)


def test_every_tenant_settings_class_defaults_to_the_one_pair_of_objectives() -> None:
    gateway = TenantConfig(api_key="k" * 16)
    rig = scaled_scenario({"tenants": [{"name": "t"}]}, 1.0, "h.yaml")["tenants"][0]
    for objectives in (TenantSpec(), gateway):
        assert (objectives.ttft_slo_s, objectives.tpot_slo_s) == (DEFAULT_TTFT_SLO_S, DEFAULT_TPOT_SLO_S)
    assert (rig["ttft_slo_s"], rig["tpot_slo_s"]) == (DEFAULT_TTFT_SLO_S, DEFAULT_TPOT_SLO_S)


# --- every backend judges with it -------------------------------------------------------------------------------
class Case(NamedTuple):
    """One finished request, times from its arrival (seconds)."""

    ttft_s: float
    e2e_s: float
    prompt: int
    output: int


CASES = {
    "met at both objectives": Case(0.5, 1.5, 300, 9),
    "met, ttft at the objective": Case(1.0, 1.25, 200, 5),
    "slow first token": Case(1.25, 1.5, 100, 3),
    "slow decode": Case(0.25, 1.25, 100, 5),
    "one token, in time": Case(0.75, 0.75, 50, 1),
    "one token, late": Case(1.5, 1.5, 50, 1),
}


class Counted(NamedTuple):
    """What a backend's per-tenant series say of one request."""

    met: float
    missed: float
    goodput_prompt: float
    goodput_output: float
    tpot_count: float
    tpot_sum: float


def expected(case: Case) -> Counted:
    tpot = tpot_s(case.ttft_s, case.e2e_s, case.output)
    judgement = judge(case.ttft_s, tpot, case.prompt, case.output, SPEC)
    observed = 1.0 if case.output > 1 else 0.0  # per-tenant TPOT histograms skip single-token requests
    return Counted(float(judgement.met), float(not judgement.met), judgement.goodput_prompt_tokens,
                   judgement.goodput_output_tokens, observed, observed * tpot)


def from_tenant_metrics(metrics: TenantMetrics) -> Counted:
    c, tpot = metrics.counters, metrics.histograms[GW_TPOT]
    return Counted(c[GW_MET], c[GW_MISSED], c[GW_GOODPUT_PROMPT_TOKENS], c[GW_GOODPUT_GENERATION_TOKENS],
                   tpot.count, tpot.total)


def through_simulator(case: Case) -> Counted:
    # One request past the interval: an empty batch would read as "none given" and sample the scenario's.
    batch = RequestBatch(arrival_s=np.array([1e6]), tenant=np.zeros(1, dtype=np.int32),
                         prompt_tokens=np.ones(1, dtype=np.int64), output_tokens=np.ones(1, dtype=np.int64),
                         tenant_names=(SPEC.name,))
    backend = SimBackend(ScenarioConfig(name="judge", duration_s=60.0, tenants=[SPEC]), requests=batch)
    backend.reset()
    request = Request(0, 0, 0.0, case.prompt, case.output, 0)
    backend.in_flight[request.rid] = request
    backend.first_token(request, case.ttft_s)
    backend.finished(request, case.e2e_s)
    return from_tenant_metrics(backend.advance(1.0).tenants[SPEC.name])


def through_gateway(case: Case) -> Counted:
    metrics = GatewayMetrics([TenantConfig(name=SPEC.name, api_key="k" * 16, ttft_slo_s=SPEC.ttft_slo_s,
                                           tpot_slo_s=SPEC.tpot_slo_s)])
    track = metrics.arrive(SPEC.name, 0.0)
    track.admit()
    track.first_token(case.ttft_s)
    track.finish(case.e2e_s, case.prompt, case.output)

    def sample(name: str) -> float:
        value = metrics.registry.get_sample_value(name, {"tenant": SPEC.name})
        assert value is not None, name
        return value

    return Counted(sample(GW_MET), sample(GW_MISSED), sample(GW_GOODPUT_PROMPT_TOKENS),
                   sample(GW_GOODPUT_GENERATION_TOKENS), sample(f"{GW_TPOT}_count"), sample(f"{GW_TPOT}_sum"))


def through_loadgen(case: Case) -> Counted:
    result = RequestResult(0, SPEC.name, 0.0, case.prompt, case.output, status=200, received_tokens=case.output,
                           ttft_s=case.ttft_s, e2e_s=case.e2e_s, outcome="finished")
    return from_tenant_metrics(tenant_metrics([result], SPEC))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_simulator_gateway_and_loadgen_judge_a_request_alike(case: Case) -> None:
    want = expected(case)
    for backend in (through_simulator, through_gateway, through_loadgen):
        assert backend(case) == want, backend.__name__


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_emulated_replica_observes_the_shared_tpot(case: Case) -> None:
    replica = ReplicaMetrics("decode", "m", 4096, 1.0, {})
    replica.finished(EngineRequest("r", case.prompt, case.output, arrival=0.0, generated=case.output,
                                   first_token_at=case.ttft_s, finished_at=case.e2e_s, finish_reason="length"))
    labels = {"engine": "0", "model_name": "m"}
    # vLLM observes every finished request, a single-token one at 0.0.
    assert replica.registry.get_sample_value(f"{TPOT}_count", labels) == 1.0
    assert replica.registry.get_sample_value(f"{TPOT}_sum", labels) == tpot_s(case.ttft_s, case.e2e_s, case.output)


@pytest.mark.parametrize("module", [sim_cluster, sim_replica, gateway_metrics, loadgen, emulator_metrics],
                         ids=lambda module: module.__name__)
def test_no_backend_keeps_its_own_copy_of_the_tpot_formula(module: ModuleType) -> None:
    source = inspect.getsource(module)
    assert "tpot_s(" in source
    assert not re.search(r"/ \(\s*[\w.]+ - 1\s*\)", source), "divide through env.metrics.tpot_s instead"
