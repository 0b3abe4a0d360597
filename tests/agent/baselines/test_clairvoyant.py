"""``clairvoyant``: the SLA planner fed the true load of the next adjustment interval."""

from __future__ import annotations

import numpy as np
import pytest

from agent.baselines import BaselineError, ClairvoyantPlannerPolicy, make_baseline
from agent.baselines.clairvoyant import true_load
from agent.baselines.signals import Load
from env.workload import RequestBatch
from tests.agent.baselines.fakes import RoundProfile
from tests.agent.baselines.helpers import context, history, spec


def requests() -> RequestBatch:
    """1,800 requests (prompt 2100, output 300) in [0, 90) s, then 180 (prompt 1000, output 100) in [90, 180)."""
    arrivals = np.concatenate([np.linspace(0.0, 89.9, 1800), np.linspace(90.0, 179.9, 180)])
    prompts = np.concatenate([np.full(1800, 2100), np.full(180, 1000)])
    outputs = np.concatenate([np.full(1800, 300), np.full(180, 100)])
    return RequestBatch(arrivals, np.zeros(1980, dtype=np.int32), prompts, outputs, ("chat",))


def test_true_load_counts_the_window() -> None:
    assert true_load(requests(), 0.0, 90.0) == Load(1800, 2100, 300)
    later = true_load(requests(), 90.0, 90.0)
    assert (later.requests, later.prompt_tokens, later.output_tokens) == (180, 1000, 100)
    assert true_load(requests(), 500.0, 90.0).requests == 0


def test_clairvoyant_plans_from_the_true_future_from_the_first_interval() -> None:
    policy = ClairvoyantPlannerPolicy(profile=RoundProfile(), adjustment_interval_s=90.0)
    policy.reset(context(requests=requests()))
    snapshots = history([spec()] * 5)  # no observed traffic: corrections stay 1
    plans = [policy.act(None, snapshots[:n + 1]) for n in range(5)]  # type: ignore[arg-type]
    replicas = [(a.pools["prefill"].replicas, a.pools["decode"].replicas) for a in plans]
    # [0, 90): 20 rps · 2100 / 10,000 = 4.2 → 5; 20 · 300 / 200 / 4 = 7.5 → 8
    # [90, 180): 2 rps · 1000 / 10,000 = 0.2 → 1; 2 · 100 / 200 / 4 → 1
    assert replicas == [(5, 8), (5, 8), (5, 8), (1, 1), (1, 1)]


def test_clairvoyant_refuses_to_run_without_the_true_requests() -> None:
    with pytest.raises(BaselineError, match=r"PolicyContext.requests is None.*env.backend.requests"):
        make_baseline("clairvoyant").reset(context())
