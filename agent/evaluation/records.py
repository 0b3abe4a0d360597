"""Flat records of an episode: one ``results.csv`` row per episode, one timeline row per interval.

Column names are ``<quantity>/<tenant or pool>`` where a quantity is per tenant or per pool. Units are in
the names: ``_s`` seconds, ``_usd`` US dollars, ``_rps`` requests per second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from disaggpilot.env.metrics import GW_ARRIVED, GW_TPOT, GW_TTFT, MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.summary import summarize


@dataclass
class StepRecord:
    """What the harness keeps of one control interval besides its snapshot."""

    reward: float
    """The environment's reward for the interval (reward units)."""
    scaled: bool
    """Whether the interval's action changed a replica target."""


@dataclass
class EpisodeTrace:
    """Everything an episode produced that the records are computed from.

    Attributes:
        world: the episode's scenario (after domain randomisation).
        roles: the scaled pool roles, in order.
        snapshots: one per control interval (the reset snapshot excluded).
        steps: one per control interval, aligned with ``snapshots``.
        wall_s: wall-clock seconds of the episode loop (seconds).
        prepare_wall_s: wall-clock seconds of the policy's ``prepare`` hook, 0 without one (seconds).
        notes: extra results columns the policy reported through its optional ``episode_notes()`` hook
            (e.g. ``dynamic_oracle``'s ``oracle_holds``).
    """

    world: ScenarioConfig
    roles: Sequence[str]
    snapshots: list[MetricsSnapshot] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    wall_s: float = 0.0
    prepare_wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def results_row(policy: str, kind: str, scenario: str, seed: int, trace: EpisodeTrace,
                sees_future: bool = False) -> dict[str, Any]:
    """The episode's ``results.csv`` row: economics, SLOs, scaling activity, reward and wall time.

    ``sees_future`` marks a policy that knew the episode in advance (``agent.policy.sees_future``).
    """
    summary = summarize(trace.snapshots, trace.world.tenants)
    row: dict[str, Any] = {
        "policy": policy, "kind": kind, "sees_future": sees_future, "scenario": scenario, "seed": seed,
        "goodput_tokens_per_usd": summary.goodput_tokens_per_usd,
        "usd_per_million_goodput_tokens": summary.usd_per_million_goodput_tokens,
        "cost_usd": summary.cost_usd, "gpu_hours": summary.gpu_hours, "goodput_tokens": summary.goodput_tokens,
        "min_attainment": summary.min_attainment,
        "meets_slo": all(math.isnan(t.attainment) or t.attainment >= t.target for t in summary.tenants),
    }
    for tenant in summary.tenants:
        row[f"attainment/{tenant.tenant}"] = tenant.attainment
        row[f"target/{tenant.tenant}"] = tenant.target
    for tenant in summary.tenants:
        row[f"ttft_p90_s/{tenant.tenant}"] = float(tenant.ttft_p90_s)
        row[f"tpot_p90_s/{tenant.tenant}"] = float(tenant.tpot_p90_s)
    row["scale_actions"] = sum(step.scaled for step in trace.steps)
    for role in trace.roles:
        billed = [s.pools[role].replicas_billed for s in trace.snapshots if role in s.pools]
        row[f"mean_replicas/{role}"] = sum(billed) / len(billed) if billed else math.nan
    row.update({"total_reward": sum(step.reward for step in trace.steps), "intervals": len(trace.steps),
                "duration_s": summary.duration_s, "wall_s": trace.wall_s, "prepare_wall_s": trace.prepare_wall_s})
    row.update(trace.notes)
    return row


def timeline_row(snapshot: MetricsSnapshot, step: StepRecord, tenants: Sequence[str],
                 roles: Sequence[str]) -> dict[str, Any]:
    """One interval: end time, replicas per pool, per-tenant load and p90 latencies, attainment, cost."""
    row: dict[str, Any] = {"time_s": snapshot.end_s}
    for role in roles:
        pool = snapshot.pools.get(role)
        row[f"replicas_ready/{role}"] = pool.replicas_ready if pool else 0
        row[f"replicas_starting/{role}"] = pool.replicas_starting if pool else 0
        row[f"replicas_draining/{role}"] = pool.replicas_draining if pool else 0
    interval = snapshot.interval_s
    for name in tenants:
        metrics = snapshot.tenants.get(name)
        if metrics is None:
            row.update({f"arrival_rps/{name}": 0.0, f"ttft_p90_s/{name}": math.nan,
                        f"tpot_p90_s/{name}": math.nan, f"attainment/{name}": math.nan})
            continue
        row[f"arrival_rps/{name}"] = metrics.counters[GW_ARRIVED] / interval if interval > 0 else math.nan
        row[f"ttft_p90_s/{name}"] = float(metrics.histograms[GW_TTFT].quantile(0.9))
        row[f"tpot_p90_s/{name}"] = float(metrics.histograms[GW_TPOT].quantile(0.9))
        row[f"attainment/{name}"] = metrics.attainment()
    row.update({"cost_usd": snapshot.cost_usd, "reward": step.reward, "scaled": int(step.scaled)})
    return row


def timeline(trace: EpisodeTrace) -> list[dict[str, Any]]:
    """Every interval of the episode as a timeline row."""
    tenants = [tenant.name for tenant in trace.world.tenants]
    return [timeline_row(snapshot, step, tenants, trace.roles)
            for snapshot, step in zip(trace.snapshots, trace.steps, strict=True)]
