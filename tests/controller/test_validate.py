"""Snapshot validation: each problem is found and named."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from disaggpilot.controller.validate import MISSING, NAN, OUT_OF_RANGE, STALE, validate_snapshot
from disaggpilot.env.metrics import GW_MET, KV_USAGE, PROMPT_TOKENS, TTFT, WAITING, MetricsSnapshot
from disaggpilot.env.testing import make_snapshot
from tests.controller.conftest import healthy_spec

POOLS, TENANTS = ("prefill", "decode"), ("chat", "summarise")


def fresh() -> MetricsSnapshot:
    return make_snapshot(healthy_spec(), 30.0, 60.0)


def check(snapshot: MetricsSnapshot, now_s: float = 61.0) -> tuple[str, str] | None:
    problem = validate_snapshot(snapshot, now_s, 90.0, POOLS, TENANTS)
    return None if problem is None else (problem.reason, problem.detail)


def test_a_healthy_snapshot_passes() -> None:
    assert check(fresh()) is None


def test_a_snapshot_older_than_the_limit_is_stale() -> None:
    assert check(fresh(), now_s=149.0) is None
    found = check(fresh(), now_s=151.0)
    assert found is not None and found[0] == STALE and "91.0 s ago" in found[1]


def _drop_pool(s: MetricsSnapshot) -> None:
    del s.pools["decode"]


def _drop_tenant(s: MetricsSnapshot) -> None:
    del s.tenants["chat"]


def _drop_gauge(s: MetricsSnapshot) -> None:
    del s.pools["prefill"].gauges[WAITING]


def _nan_gauge(s: MetricsSnapshot) -> None:
    s.pools["decode"].gauges[KV_USAGE] = math.nan


def _inf_counter(s: MetricsSnapshot) -> None:
    s.tenants["chat"].counters[GW_MET] = math.inf


def _nan_bucket(s: MetricsSnapshot) -> None:
    s.pools["prefill"].histograms[TTFT].counts[3] = math.nan


def _kv_above_one(s: MetricsSnapshot) -> None:
    s.pools["decode"].gauges[KV_USAGE] = 1.5


def _negative_counter(s: MetricsSnapshot) -> None:
    s.pools["prefill"].counters[PROMPT_TOKENS] = -10.0


def _negative_replicas(s: MetricsSnapshot) -> None:
    s.pools["prefill"].replicas_ready = -1


@pytest.mark.parametrize(("edit", "reason", "named"), [
    (_drop_pool, MISSING, "pool decode"),
    (_drop_tenant, MISSING, "tenant chat"),
    (_drop_gauge, MISSING, WAITING),
    (_nan_gauge, NAN, KV_USAGE),
    (_inf_counter, NAN, GW_MET),
    (_nan_bucket, NAN, TTFT),
    (_kv_above_one, OUT_OF_RANGE, KV_USAGE),
    (_negative_counter, OUT_OF_RANGE, PROMPT_TOKENS),
    (_negative_replicas, OUT_OF_RANGE, "replica counts"),
])
def test_each_problem_is_found_and_named(edit: Callable[[MetricsSnapshot], None], reason: str, named: str) -> None:
    snapshot = fresh()
    edit(snapshot)
    found = check(snapshot)
    assert found is not None and found[0] == reason and named in found[1], found
