"""Tenants and the requests they send: SLOs, arrival processes, length distributions, trace replay.

Arrivals are sampled by time rescaling: a stationary unit-rate process (Poisson, a gamma renewal with
inter-arrival CV ``cv``, or a Markov-modulated Poisson process whose states are bursts and lulls) is drawn
in operational time and mapped through the inverse of the cumulative rate Λ(t) = ∫ λ, where λ(t) is the
base rate times the diurnal sinusoid times every active spike or step. For Poisson this is an exact
non-homogeneous Poisson process (up to the grid integration of the sinusoid).

Every tenant draws from its own random streams, keyed by the seed and the tenant's name, so adding,
removing or reordering tenants leaves the other tenants' requests unchanged.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.metrics import DEFAULT_TPOT_SLO_S, DEFAULT_TTFT_SLO_S
from disaggpilot.env.trace import TRACE_FORMATS, load_length_table, load_trace

ARRIVAL_PROCESSES: tuple[str, ...] = ("poisson", "gamma", "mmpp")
"""Values of ``ArrivalSpec.process``."""
LENGTH_KINDS: tuple[str, ...] = ("fixed", "lognormal", "empirical")
"""Values of ``LengthSpec.kind``."""
MAX_CV = 100.0
"""Largest inter-arrival CV accepted (the Azure 2023 code trace measures about 13)."""
_MAX_GRID_POINTS = 2_000_000
_MAX_REQUESTS = 5e7
_T = TypeVar("_T")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _check(obj: object, names: Sequence[str], ok: Callable[[float], bool], fix: str) -> None:
    """Raise :class:`ConfigError` for the first field in ``names`` that is not a number passing ``ok``."""
    for name in names:
        value = getattr(obj, name)
        require(_is_number(value) and ok(value), name, value, fix)


def _check_int(obj: object, name: str, low: float, fix: str) -> None:
    """Require field ``name`` to be an integer >= ``low``; store it as ``int``."""
    value = getattr(obj, name)
    integral = _is_number(value) and math.isfinite(value) and float(value).is_integer()
    require(integral and value >= low, name, value, fix)
    setattr(obj, name, int(value))


def _check_choice(obj: object, name: str, choices: Sequence[str]) -> None:
    value = getattr(obj, name)
    require(value in choices, name, value, f"use one of {list(choices)}")


def _check_label(value: object, name: str, fix: str) -> None:
    require(isinstance(value, str) and value.strip() != "", name, value, fix)


@contextmanager
def _scope(prefix: str) -> Iterator[None]:
    """Prefix the key of any :class:`ConfigError` raised inside with ``prefix`` (e.g. ``tenants[1].``)."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None


def _coerce(value: Any, cls: type[_T], key: str) -> _T:
    """``value`` when it already is a ``cls``; ``cls(**value)`` for a mapping (Hydra passes dicts)."""
    if isinstance(value, cls):
        return value
    require(isinstance(value, Mapping), key, value, f"give a {cls.__name__} or a mapping of its fields")
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(name) for name in value if name not in known)
    if unknown:
        require(False, f"{key}.{unknown[0]}", value[unknown[0]],
                f"unknown field of {cls.__name__}; known fields: {sorted(known)}")
    with _scope(f"{key}."):
        return cls(**value)


@dataclass
class RateChange:
    """A change of a tenant's arrival rate over a window: a spike, or a step when it never ends."""

    start_s: float = 0.0
    """When the change begins (seconds from episode start)."""
    duration_s: float = float("inf")
    """How long it lasts (seconds); ``inf`` makes it a step."""
    multiplier: float = 1.0
    """Factor on the base rate while it lasts (>= 0)."""

    def __post_init__(self) -> None:
        _check(self, ("start_s",), _non_negative, "use a finite start >= 0 (seconds from episode start)")
        _check(self, ("duration_s",), lambda value: value > 0, "use a duration > 0 (seconds); inf: a step")
        _check(self, ("multiplier",), _non_negative, "use a finite factor >= 0 (0 silences the tenant)")


@dataclass
class ArrivalSpec:
    """How a tenant's requests arrive."""

    process: str = "poisson"
    """``poisson``, ``gamma`` (a renewal process whose inter-arrival CV is ``cv``) or ``mmpp`` (a
    Markov-modulated Poisson process over ``mmpp_multipliers`` and ``mmpp_dwell_s``: bursts and lulls that
    last seconds to minutes, as the Azure 2023 traces show; fitted by ``benchmarks/fit_arrivals.py``)."""
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
    mmpp_multipliers: list[float] = field(default_factory=list)
    """For ``mmpp``: each state's rate relative to the others (> 0). They are rescaled so the long-run mean
    rate is ``rate_rps``; the states' time shares are proportional to ``mmpp_dwell_s``."""
    mmpp_dwell_s: list[float] = field(default_factory=list)
    """For ``mmpp``: each state's mean sojourn (seconds at the base rate; exponential). On leaving a state
    the process moves to one of the others, chosen uniformly."""

    def __post_init__(self) -> None:
        _check_choice(self, "process", ARRIVAL_PROCESSES)
        self._check_mmpp()
        _check(self, ("rate_rps",), _non_negative, "use a finite rate >= 0 (requests per second)")
        _check(self, ("cv",), lambda value: 0 < value <= MAX_CV,
               f"use 0 < cv <= {MAX_CV:g} (1 is Poisson, > 1 is bursty)")
        _check(self, ("diurnal_amplitude",), lambda value: 0 <= value <= 1, "use 0..1 (0 disables it)")
        _check(self, ("diurnal_period_s",), _positive, "use a finite period > 0 (seconds)")
        _check(self, ("diurnal_phase_s",), math.isfinite, "use a finite time (seconds)")
        is_list = isinstance(self.changes, Sequence) and not isinstance(self.changes, str)
        require(is_list, "changes", self.changes, "give a list of RateChange (or of mappings)")
        self.changes = [_coerce(item, RateChange, f"changes[{i}]") for i, item in enumerate(self.changes)]
        if self.process != "gamma" and self.cv != 1:
            warnings.warn(f"arrival.cv={self.cv} is ignored by the {self.process} process; use process=gamma",
                          stacklevel=3)

    def _check_mmpp(self) -> None:
        """The modulation lists: required (two states or more, same length) for mmpp, empty otherwise."""
        for key in ("mmpp_multipliers", "mmpp_dwell_s"):
            values = getattr(self, key)
            is_list = isinstance(values, Sequence) and not isinstance(values, str)
            require(is_list and all(_is_number(v) and _positive(v) for v in values), key, values,
                    "give a list of finite numbers > 0, one per state")
            setattr(self, key, [float(v) for v in values])
        if self.process != "mmpp":
            require(not self.mmpp_multipliers and not self.mmpp_dwell_s, "mmpp_multipliers", self.mmpp_multipliers,
                    "set process=mmpp to use the modulation, or leave both lists empty")
            return
        states = len(self.mmpp_multipliers)
        require(states >= 2 and len(self.mmpp_dwell_s) == states, "mmpp_dwell_s", self.mmpp_dwell_s,
                f"give one dwell per state: {states} multipliers need {states} dwells (two states at least)")

    def rate_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Instantaneous arrival rate λ(t) (requests per second) at times ``t_s`` (seconds from start)."""
        t = np.asarray(t_s, dtype=np.float64)
        rate = np.full(t.shape, float(self.rate_rps))
        if self.diurnal_amplitude > 0:
            angle = 2.0 * np.pi * (t - self.diurnal_phase_s) / self.diurnal_period_s
            rate *= 1.0 + self.diurnal_amplitude * np.sin(angle)
        for change in self.changes:
            active = (t >= change.start_s) & (t < change.start_s + change.duration_s)
            rate = np.where(active, rate * change.multiplier, rate)
        return rate

    def expected_requests(self, duration_s: float) -> float:
        """Expected number of arrivals Λ(duration_s) over ``[0, duration_s)`` (requests)."""
        return float(_cumulative_rate(self, _rate_grid(self, duration_s))[-1])


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

    def __post_init__(self) -> None:
        _check_choice(self, "kind", LENGTH_KINDS)
        _check(self, ("prompt_mean", "output_mean"), _positive, "use a finite mean > 0 (tokens)")
        _check(self, ("prompt_cv", "output_cv"), _non_negative, "use a finite CV >= 0 (0: always the mean)")
        _check(self, ("scale",), _positive, "use a finite factor > 0")
        _check_int(self, "min_tokens", 1, "use an integer >= 1 (tokens)")
        for name in ("max_prompt_tokens", "max_output_tokens"):
            _check_int(self, name, self.min_tokens, f"use an integer >= min_tokens={self.min_tokens}")
        if self.kind == "empirical":
            _check_label(self.path, "path", "empirical lengths need a CSV with columns "
                                            "input_tokens,output_tokens (or ContextTokens,GeneratedTokens)")
        elif self.path:
            warnings.warn(f"lengths.path={self.path!r} is ignored unless kind=empirical", stacklevel=3)


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
    hash_block_tokens: int = 16
    """Prompt tokens one id of the trace's optional ``hash_ids`` column covers (tokens): 16 is vLLM's KV
    block; Mooncake's public traces use 512."""

    def __post_init__(self) -> None:
        _check_label(self.path, "path", "name a trace CSV (native or Azure format)")
        _check_choice(self, "format", TRACE_FORMATS)
        _check(self, ("rate_multiplier",), _positive, "use a finite factor > 0 (2 doubles the arrival rate)")
        _check(self, ("start_s",), _non_negative, "use a finite start >= 0 (seconds of trace time)")
        _check(self, ("end_s",), lambda value: value > self.start_s,
               f"use an end > start_s={self.start_s} (seconds of trace time; inf for the whole trace)")
        if self.tenant_column_value is not None:
            _check_label(self.tenant_column_value, "tenant_column_value", "use a non-empty label, or null")
        _check_int(self, "hash_block_tokens", 16, "use an integer >= 16 (tokens)")
        require(self.hash_block_tokens % 16 == 0, "hash_block_tokens", self.hash_block_tokens,
                "use a multiple of 16 tokens (vLLM's KV block), e.g. 512 for Mooncake's traces")


if TYPE_CHECKING:
    _OptionalTrace = TraceSpec | None
else:
    # The Hydra schema types ``TenantSpec.trace`` as Any: OmegaConf 2.3 cannot fill a null nested dataclass
    # from an override (omry/omegaconf#1035: ``scenario.tenants.0.trace.path=...`` crashes). The field is
    # still checked, with its key named: ``TenantSpec.__post_init__`` coerces a mapping into a TraceSpec.
    _OptionalTrace = Any


@dataclass
class TenantSpec:
    """One tenant: who it is, what it is promised, and what it sends."""

    name: str = "default"
    """Label on every per-tenant series."""
    ttft_slo_s: float = DEFAULT_TTFT_SLO_S
    """Time-to-first-token objective (seconds)."""
    tpot_slo_s: float = DEFAULT_TPOT_SLO_S
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
    trace: _OptionalTrace = None
    """Replay this trace instead of sampling."""
    shared_prefix_tokens: int = 0
    """Tokens every prompt of this tenant starts with (a system prompt, an agent's tool list), which the
    simulator's prefix caches can reuse (tokens; 0: prompts share nothing). A trace's ``hash_ids`` column,
    when present, says what is shared instead."""
    shared_prefix_groups: int = 1
    """Distinct shared prefixes of ``shared_prefix_tokens`` each (agents, each with its own system prompt and
    tools); every request starts with one of them, drawn uniformly."""

    def __post_init__(self) -> None:
        _check_label(self.name, "name", "use a non-empty label")
        _check(self, ("ttft_slo_s", "tpot_slo_s"), _positive, "use a finite objective > 0 (seconds)")
        _check(self, ("attainment_target",), lambda value: 0 < value <= 1, "use a fraction in (0, 1]")
        _check(self, ("weight", "prompt_token_weight", "output_token_weight"), _non_negative,
               "use a finite weight >= 0")
        _check_int(self, "priority", -math.inf, "use an integer (higher goes first)")
        _check_int(self, "shared_prefix_tokens", 0, "use an integer >= 0 (tokens; 0: prompts share nothing)")
        _check_int(self, "shared_prefix_groups", 1, "use an integer >= 1 (distinct shared prefixes)")
        self.arrival = _coerce(self.arrival, ArrivalSpec, "arrival")
        self.lengths = _coerce(self.lengths, LengthSpec, "lengths")
        if self.trace is not None:
            self.trace = _coerce(self.trace, TraceSpec, "trace")


@dataclass
class RequestBatch:
    """All requests of an episode, sorted by arrival time.

    Attributes:
        arrival_s: arrival times (seconds from episode start), non-decreasing, float64.
        tenant: index into ``tenant_names`` per request, int32.
        prompt_tokens: prompt length per request (tokens, >= 1), int64.
        output_tokens: output length per request (tokens, >= 1), int64.
        tenant_names: tenant names in index order.
        hash_ids: per request, its prompt's KV-block ids from a trace's ``hash_ids`` column (``None`` for a
            request of a tenant without one), or ``None`` when no tenant's trace has that column.
    """

    arrival_s: np.ndarray
    tenant: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    tenant_names: tuple[str, ...]
    hash_ids: list[tuple[int, ...] | None] | None = None

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def __post_init__(self) -> None:
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.tenant = np.asarray(self.tenant, dtype=np.int32)
        self.prompt_tokens = np.asarray(self.prompt_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)
        self.tenant_names = tuple(self.tenant_names)
        count = self.arrival_s.shape[0]
        for name in ("arrival_s", "tenant", "prompt_tokens", "output_tokens"):
            shape = getattr(self, name).shape
            require(shape == (count,), f"RequestBatch.{name}", shape, f"use a 1-D array of {count} values")
        require(bool(np.all(np.diff(self.arrival_s) >= 0)), "RequestBatch.arrival_s", "unsorted",
                "sort requests by arrival time")
        if self.hash_ids is not None:
            require(len(self.hash_ids) == count, "RequestBatch.hash_ids", len(self.hash_ids),
                    f"give one entry per request ({count})")
        in_range = np.all((self.tenant >= 0) & (self.tenant < len(self.tenant_names)))
        require(bool(in_range), "RequestBatch.tenant", "out of range", "index into tenant_names")
        for name in ("prompt_tokens", "output_tokens"):
            positive = bool(np.all(getattr(self, name) >= 1))
            require(positive, f"RequestBatch.{name}", "< 1", "lengths are >= 1 token")


def tenants_from_config(raw: Sequence[TenantSpec | Mapping[str, Any]]) -> list[TenantSpec]:
    """Build tenants from a config list (dataclasses or mappings); errors name ``tenants[i].<field>``.

    Raises:
        ConfigError: a field is invalid, the list is empty, or two tenants share a name.
    """
    is_list = isinstance(raw, Sequence) and not isinstance(raw, str)
    require(is_list and len(raw) > 0, "tenants", raw, "configure a list of at least one tenant")
    tenants = [_coerce(item, TenantSpec, f"tenants[{i}]") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, tenant in enumerate(tenants):
        require(tenant.name not in seen, f"tenants[{i}].name", tenant.name, "tenant names must be unique")
        seen.add(tenant.name)
    return tenants


def generate_requests(tenants: list[TenantSpec], duration_s: float, seed: int) -> RequestBatch:
    """Sample (or replay) every tenant's requests over ``[0, duration_s)``, deterministically per seed.

    Args:
        tenants: the tenants (mappings of their fields are accepted too); names must be unique.
        duration_s: episode length (seconds, finite, > 0).
        seed: non-negative integer; each tenant's streams derive from it and the tenant's name.

    Returns:
        All requests, sorted by arrival (ties keep tenant order).

    Raises:
        ConfigError: a bad tenant, duration or seed.
        TraceError: a trace or length table is missing or malformed.
    """
    require(_is_number(duration_s) and _positive(duration_s), "duration_s", duration_s,
            "use a finite episode length > 0 (seconds)")
    is_seed = isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0
    require(is_seed, "seed", seed, "use an integer >= 0")
    checked = tenants_from_config(tenants)
    parts = [_tenant_requests(tenant, float(duration_s), int(seed)) for tenant in checked]
    batch = _merge(parts, tuple(tenant.name for tenant in checked))
    hashes = [_replay_hash_ids(tenant, float(duration_s)) for tenant in checked]
    if any(ids is not None for ids in hashes):
        order = np.argsort(np.concatenate([part[0] for part in parts]), kind="stable")
        flat = [ids for part, tenant_ids in zip(parts, hashes, strict=True)
                for ids in (tenant_ids or [None] * part[0].shape[0])]
        batch.hash_ids = [flat[i] for i in order.tolist()]
    return batch


def sample_arrivals(spec: ArrivalSpec, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (seconds, float64, sorted) on ``[0, duration_s)``, by time rescaling.

    A stationary unit-rate renewal process drawn in operational time is mapped through the inverse of
    Λ(t), which is piecewise linear between integration points (np.interp).
    """
    grid = _rate_grid(spec, duration_s)
    cumulative = _cumulative_rate(spec, grid)
    total = float(cumulative[-1])
    require(total <= _MAX_REQUESTS, "arrival.rate_rps", spec.rate_rps,
            f"{total:.3g} requests expected in {duration_s:g} s; keep an episode under {_MAX_REQUESTS:.0e}")
    arrival = np.interp(_unit_process(spec, total, rng), cumulative, grid)
    return arrival[arrival < duration_s]


def sample_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths (tokens, int64) of ``count`` requests: sampled, scaled, clamped, rounded."""
    prompt, output = _raw_lengths(spec, count, rng)
    return (_finish(prompt * spec.scale, spec.min_tokens, spec.max_prompt_tokens),
            _finish(output * spec.scale, spec.min_tokens, spec.max_output_tokens))


def _rate_grid(spec: ArrivalSpec, duration_s: float) -> np.ndarray:
    """Integration points on ``[0, duration_s]``: every change boundary, plus a fine grid under a sinusoid."""
    edges = [change.start_s for change in spec.changes]
    edges += [change.start_s + change.duration_s for change in spec.changes]
    points = [np.array([0.0, duration_s]), np.clip(np.array(edges, dtype=np.float64), 0.0, duration_s)]
    if spec.diurnal_amplitude > 0:
        step = max(min(1.0, spec.diurnal_period_s / 64.0), duration_s / _MAX_GRID_POINTS)
        points.append(np.arange(0.0, duration_s, step))
    return np.unique(np.concatenate(points))


def _cumulative_rate(spec: ArrivalSpec, grid: np.ndarray) -> np.ndarray:
    """Λ at each grid point (expected requests since 0), midpoint rule: exact for spikes and steps."""
    widths = np.diff(grid)
    return np.concatenate(([0.0], np.cumsum(spec.rate_at(grid[:-1] + widths / 2) * widths)))


def _unit_process(spec: ArrivalSpec, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Event times on ``[0, horizon)`` of the spec's stationary unit-rate process, in operational time."""
    if spec.process == "mmpp":
        # Operational time counts expected requests, so a dwell of d seconds at the base rate is d * rate.
        dwell = np.asarray(spec.mmpp_dwell_s) * spec.rate_rps
        return _unit_mmpp(np.asarray(spec.mmpp_multipliers), dwell, horizon, rng)
    return _unit_renewal(1.0 if spec.process == "poisson" else spec.cv ** -2, horizon, rng)


def _unit_mmpp(multipliers: np.ndarray, dwell: np.ndarray, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Event times on ``[0, horizon)`` of a stationary MMPP of mean rate 1 (operational time).

    Leaving a state moves uniformly to another, so the embedded chain is uniform and the time spent in
    each state is proportional to its mean dwell; the rates are scaled to average 1 over that share. The
    first state is drawn from that share and its sojourn is a full exponential (memoryless).
    """
    if horizon <= 0:
        return np.empty(0)
    share = dwell / dwell.sum()
    rates = multipliers / float(np.dot(share, multipliers))
    state, start, pieces = int(rng.choice(len(share), p=share)), 0.0, []
    while start < horizon:
        sojourn = rng.exponential(dwell[state])
        count = rng.poisson(rates[state] * sojourn)
        pieces.append(start + np.sort(rng.random(count)) * sojourn)
        start += sojourn
        state = (state + int(rng.integers(1, len(share)))) % len(share)
    times = np.concatenate(pieces)
    return times[times < horizon]


def _unit_renewal(shape: float, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Event times on ``[0, horizon)`` of a stationary unit-rate renewal process with Gamma(shape) gaps.

    The first event follows the forward-recurrence law ``U * Gamma(shape + 1)``, so the process is
    stationary from time 0; gaps are drawn in vectorised chunks sized to cover the horizon.
    """
    scale = 1.0 / shape
    pieces = [np.array([rng.random() * rng.gamma(shape + 1.0, scale)])]
    while pieces[-1][-1] < horizon:
        remaining = horizon - pieces[-1][-1]
        size = int(remaining + 4.0 * math.sqrt(remaining * scale) + 16)
        pieces.append(pieces[-1][-1] + np.cumsum(rng.gamma(shape, scale, size)))
    times = np.concatenate(pieces)
    return times[times < horizon]


def _raw_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if spec.kind == "empirical":
        prompts, outputs = load_length_table(str(spec.path))
        rows = rng.integers(0, prompts.shape[0], size=count)
        return prompts[rows].astype(np.float64), outputs[rows].astype(np.float64)
    if spec.kind == "fixed":
        return np.full(count, float(spec.prompt_mean)), np.full(count, float(spec.output_mean))
    return (_lognormal(spec.prompt_mean, spec.prompt_cv, count, rng),
            _lognormal(spec.output_mean, spec.output_cv, count, rng))


def _lognormal(mean: float, cv: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Lognormal samples with the given mean and coefficient of variation (sigma² = ln(1 + cv²))."""
    sigma = math.sqrt(math.log1p(cv * cv))
    return rng.lognormal(math.log(mean) - sigma * sigma / 2.0, sigma, size=count)


def _finish(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """Round to whole tokens and clamp to ``[low, high]`` (int64)."""
    return np.clip(np.rint(values), low, high).astype(np.int64)


def _tenant_streams(seed: int, name: str) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (arrival, length) generators of one tenant, keyed by the seed and the tenant's name."""
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    arrival_seed, length_seed = np.random.SeedSequence(seed, spawn_key=(key,)).spawn(2)
    return np.random.default_rng(arrival_seed), np.random.default_rng(length_seed)


_Requests = tuple[np.ndarray, np.ndarray, np.ndarray]


def _tenant_requests(tenant: TenantSpec, duration_s: float, seed: int) -> _Requests:
    """(arrival_s, prompt_tokens, output_tokens) of one tenant: replayed, or sampled from its streams."""
    if tenant.trace is not None:
        return _replay(tenant.trace, tenant.name, duration_s)
    arrival_rng, length_rng = _tenant_streams(seed, tenant.name)
    arrival = sample_arrivals(tenant.arrival, duration_s, arrival_rng)
    prompt, output = sample_lengths(tenant.lengths, arrival.shape[0], length_rng)
    return arrival, prompt, output


def _replay(spec: TraceSpec, tenant_name: str, duration_s: float) -> _Requests:
    trace = load_trace(spec.path, spec.format)
    label = (spec.tenant_column_value or tenant_name) if trace.format == "native" else None
    return trace.replay(tenant=label, start_s=spec.start_s, end_s=spec.end_s,
                        rate_multiplier=spec.rate_multiplier, duration_s=duration_s)


def _replay_hash_ids(tenant: TenantSpec, duration_s: float) -> list[tuple[int, ...] | None] | None:
    """The ``hash_ids`` of the rows a tenant's trace replay keeps, in the same order; None without them."""
    if tenant.trace is None:
        return None
    spec = tenant.trace
    trace = load_trace(spec.path, spec.format)
    if trace.hash_ids is None:
        return None
    label = (spec.tenant_column_value or tenant.name) if trace.format == "native" else None
    rows = trace.window_rows(tenant=label, start_s=spec.start_s, end_s=spec.end_s,
                             rate_multiplier=spec.rate_multiplier, duration_s=duration_s)
    return [trace.hash_ids[row] for row in rows.tolist()]


def _merge(parts: list[_Requests], names: tuple[str, ...]) -> RequestBatch:
    """Concatenate the tenants' requests and sort them by arrival (stable: ties keep tenant order)."""
    arrival = np.concatenate([part[0] for part in parts]).astype(np.float64)
    order = np.argsort(arrival, kind="stable")
    tenant = np.concatenate([np.full(part[0].shape[0], i, dtype=np.int32) for i, part in enumerate(parts)])
    prompt = np.concatenate([part[1] for part in parts]).astype(np.int64)
    output = np.concatenate([part[2] for part in parts]).astype(np.int64)
    return RequestBatch(arrival_s=arrival[order], tenant=tenant[order], prompt_tokens=prompt[order],
                        output_tokens=output[order], tenant_names=names)
