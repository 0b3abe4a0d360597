"""Tenants and the requests they send: SLOs, arrival processes, length distributions, trace replay.

SKELETON: the dataclasses and the ``RequestBatch`` contract are fixed; generation is filled in by
``generate_requests``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RateChange:
    """A change of a tenant's arrival rate over a window: a spike, or a step when it never ends."""

    start_s: float = 0.0
    """When the change begins (seconds from episode start)."""
    duration_s: float = float("inf")
    """How long it lasts (seconds); ``inf`` makes it a step."""
    multiplier: float = 1.0
    """Factor on the base rate while it lasts (>= 0)."""


@dataclass
class ArrivalSpec:
    """How a tenant's requests arrive."""

    process: str = "poisson"
    """``poisson`` or ``gamma`` (a renewal process whose inter-arrival CV is ``cv``)."""
    rate_rps: float = 1.0
    """Mean arrival rate before modulation (requests per second)."""
    cv: float = 1.0
    """Coefficient of variation of inter-arrival times for ``gamma`` (1 is Poisson; > 1 is bursty)."""
    diurnal_amplitude: float = 0.0
    """Relative amplitude of a sinusoidal daily modulation, 0..1 (rate * (1 + a sin(...)))."""
    diurnal_period_s: float = 86400.0
    """Period of the modulation (seconds)."""
    diurnal_phase_s: float = 0.0
    """Time of the modulation's rising zero crossing (seconds)."""
    changes: list[RateChange] = field(default_factory=list)
    """Spikes and steps, applied multiplicatively."""


@dataclass
class LengthSpec:
    """Prompt and output lengths of a tenant's requests."""

    kind: str = "lognormal"
    """``fixed``, ``lognormal`` or ``empirical`` (joint pairs sampled from ``path``)."""
    prompt_mean: float = 1024.0
    """Mean prompt length (tokens)."""
    prompt_cv: float = 1.0
    """Coefficient of variation of prompt length (lognormal)."""
    output_mean: float = 128.0
    """Mean output length (tokens)."""
    output_cv: float = 1.0
    """Coefficient of variation of output length (lognormal)."""
    path: str | None = None
    """For ``empirical``: CSV with columns ``input_tokens,output_tokens`` (or the Azure columns)."""
    min_tokens: int = 1
    """Lower clamp of both lengths (tokens)."""
    max_prompt_tokens: int = 32768
    """Upper clamp of prompt length (tokens)."""
    max_output_tokens: int = 8192
    """Upper clamp of output length (tokens)."""
    scale: float = 1.0
    """Multiplier on sampled lengths (domain randomisation of the length distribution)."""


@dataclass
class TraceSpec:
    """Replay a tenant's requests from a CSV instead of sampling them."""

    path: str = ""
    """Trace file: the project's format (``timestamp_s,tenant,input_tokens,output_tokens``) or Azure's
    (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    format: str = "auto"
    """``native``, ``azure`` or ``auto`` (from the header)."""
    rate_multiplier: float = 1.0
    """Compress time by this factor (2 doubles the arrival rate)."""
    start_s: float = 0.0
    """Window start, relative to the trace's first request (seconds of trace time)."""
    end_s: float = float("inf")
    """Window end (seconds of trace time)."""
    tenant_column_value: str | None = None
    """For the native format: rows whose ``tenant`` equals this (default: the tenant's name)."""


@dataclass
class TenantSpec:
    """One tenant: who it is, what it is promised, and what it sends."""

    name: str = "default"
    """Label on every per-tenant series."""
    ttft_slo_s: float = 2.0
    """Time-to-first-token objective (seconds)."""
    tpot_slo_s: float = 0.1
    """Time-per-output-token objective (seconds per token)."""
    attainment_target: float = 0.99
    """Fraction of requests that must meet both objectives."""
    weight: float = 1.0
    """Goodput weight of this tenant's tokens (revenue weighting)."""
    prompt_token_weight: float = 1.0
    """Goodput weight of a prompt token relative to an output token."""
    output_token_weight: float = 1.0
    """Goodput weight of an output token."""
    priority: int = 0
    """Scheduling priority when the pool uses ``priority`` scheduling (higher goes first)."""
    arrival: ArrivalSpec = field(default_factory=ArrivalSpec)
    """Arrival process (ignored when ``trace`` is set)."""
    lengths: LengthSpec = field(default_factory=LengthSpec)
    """Length distributions (ignored when ``trace`` is set)."""
    trace: TraceSpec | None = None
    """Replay this trace instead of sampling."""


@dataclass
class RequestBatch:
    """All requests of an episode, sorted by arrival time.

    Attributes:
        arrival_s: arrival times (seconds from episode start), non-decreasing, float64.
        tenant: index into ``tenant_names`` per request, int32.
        prompt_tokens: prompt length per request (tokens, >= 1), int64.
        output_tokens: output length per request (tokens, >= 1), int64.
        tenant_names: tenant names in index order.
    """

    arrival_s: np.ndarray
    tenant: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    tenant_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


def generate_requests(tenants: list[TenantSpec], duration_s: float, seed: int) -> RequestBatch:
    """Sample (or replay) every tenant's requests over ``[0, duration_s)``, deterministically per seed."""
    raise NotImplementedError
