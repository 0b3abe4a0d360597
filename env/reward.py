"""The reward (docs/metrics.md): goodput against cost under per-tenant SLO constraints, minus switching costs.

Two forms, chosen by ``RewardConfig.form``:

``contract`` (the default) matches the SLO contract, which judges attainment over the whole episode::

    r_t = (goodput_t / price - cost_t) / economics_scale_usd             # Dinkelbach: goodput minus price x cost
          - sum_k lambda_k * (max(0, S_k,t) - max(0, S_k,t-1))           # episode-level hinge, telescoped
          - switching_cost * replicas changed - knob_change_cost * knobs changed

    c_k,t = missed_k,t - (1 - target_k - slo_margin) * judged_k,t        # requests
    S_k,t = sum_{u <= t} c_k,u / scale_k                                 # running episode constraint

``S_k`` ends the episode <= 0 exactly when the tenant's episode attainment is >= target + margin, so quiet
intervals bank credit that a later burst spends, and the penalties sum to ``lambda_k * max(0, S_k,T)``: an
episode that holds its target pays nothing, however bursty its intervals. ``scale_k`` is the tenant's expected
judged requests per interval (its configured mean arrival rate times the interval), so ``S_k,T`` is about the
number of intervals times the episode's attainment shortfall. The economic term's episode sum is
``total goodput / price - total cost``, which orders policies by total goodput over total cost at a fixed price
(Dinkelbach's parametric form of a ratio objective), unlike a mean of per-interval ratios.

``interval`` is the earlier form, kept for old bundles and experiments: ``goodput_per_usd / reference -
sum_k lambda_k * max(0, target_k - attainment_k,t)`` per interval, which punishes every bursty interval.

With ``lagrangian.enabled`` each ``lambda_k`` is adapted by a PID update (Stooke, Achiam and Abbeel, "Responsive
Safety in Reinforcement Learning by PID Lagrangian Methods", ICML 2020): in the contract form once per episode
(at :meth:`RewardCalculator.reset`) from the episode constraint ``target + margin - attainment``, so lambda is
constant within an episode and the hinge telescopes exactly; in the interval form every interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from disaggpilot.env.errors import check_types, require
from disaggpilot.env.metrics import GW_MET, GW_MISSED, MetricsSnapshot
from disaggpilot.env.summary import weighted_goodput
from disaggpilot.env.workload import TenantSpec

REWARD_FORMS = ("contract", "interval")


@dataclass
class LagrangianConfig:
    """PID adaptation of the per-tenant penalty weights (training only)."""

    enabled: bool = False
    """Adapt lambda_t from violations instead of holding it fixed."""
    kp: float = 1.0
    """Proportional gain (lambda per unit of the error: the interval's attainment shortfall in the interval form,
    the episode's ``target + margin - attainment`` in the contract form)."""
    ki: float = 0.05
    """Integral gain on the accumulated error (per interval, or per episode in the contract form)."""
    kd: float = 0.5
    """Derivative gain on the increase of the error."""
    lambda_max: float = 100.0
    """Upper bound on every lambda_t."""

    def __post_init__(self) -> None:
        check_types(self, "reward.lagrangian")
        for key in ("kp", "ki", "kd"):
            require(getattr(self, key) >= 0, f"reward.lagrangian.{key}", getattr(self, key), "use a gain >= 0")
        require(self.lambda_max > 0, "reward.lagrangian.lambda_max", self.lambda_max, "use > 0")


@dataclass
class RewardConfig:
    """Reward weights (``configs/reward/``); the module docstring gives both forms."""

    form: str = "contract"
    """``contract`` (episode-level SLO constraint, goodput minus price x cost) or ``interval`` (the earlier
    per-interval shortfall penalty and tokens-per-dollar ratio; ``reward=interval``)."""
    reference_tokens_per_usd: float = 1.0e6
    """Interval form: goodput tokens per USD that scores 1.0. Contract form: the price, goodput tokens one USD
    must buy to break even (tokens per USD)."""
    economics_scale_usd: float = 1.0
    """Contract form: the surplus (goodput / price - cost, USD per interval) that scores 1.0 (USD)."""
    slo_margin: float = 0.005
    """Contract form: attainment above each target that the constraint asks for (fraction of requests)."""
    clip_episode_credit: bool = True
    """Contract form: penalise only the running episode constraint's positive part (the hinge, telescoped), so
    surplus attainment is not paid for; False charges ``lambda * c`` linearly, credit included."""
    slo_penalty: float = 10.0
    """lambda_t for every tenant unless ``tenant_penalties`` names it (reward per unit of shortfall per
    interval; in the contract form per unit of the scaled constraint)."""
    tenant_penalties: dict[str, float] = field(default_factory=dict)
    """Per-tenant lambda_t overrides, by tenant name."""
    switching_cost: float = 0.01
    """Penalty per replica added or removed (reward units per replica)."""
    knob_change_cost: float = 0.05
    """Penalty per batch knob changed (reward units per change): a change restarts pods in production."""
    lagrangian: LagrangianConfig = field(default_factory=LagrangianConfig)
    """Adaptive lambda_t for training."""

    def __post_init__(self) -> None:
        check_types(self, "reward")
        require(self.form in REWARD_FORMS, "reward.form", self.form, f"use one of {REWARD_FORMS}")
        require(self.reference_tokens_per_usd > 0, "reward.reference_tokens_per_usd",
                self.reference_tokens_per_usd, "use a positive number of tokens per USD")
        require(self.economics_scale_usd > 0, "reward.economics_scale_usd", self.economics_scale_usd,
                "use a positive amount of USD")
        require(0 <= self.slo_margin < 1, "reward.slo_margin", self.slo_margin, "use a fraction in [0, 1)")
        for key in ("slo_penalty", "switching_cost", "knob_change_cost"):
            require(getattr(self, key) >= 0, f"reward.{key}", getattr(self, key), "use a value >= 0")
        for name, value in self.tenant_penalties.items():
            require(value >= 0, f"reward.tenant_penalties.{name}", value, "use a value >= 0")


@dataclass
class _EpisodeCounts:
    """One tenant's running episode totals (requests; ``constraint`` in scaled units)."""

    met: float = 0.0
    missed: float = 0.0
    constraint: float = 0.0


class RewardCalculator:
    """Computes the reward and its terms from one snapshot and the changes the action made.

    Call :meth:`reset` at every episode start: the contract form keeps running episode totals, and updates its
    multipliers from the episode that just ended.
    """

    def __init__(self, config: RewardConfig, tenants: Sequence[TenantSpec]) -> None:
        self.config, self.tenants = config, list(tenants)
        self.base = {t.name: config.tenant_penalties.get(t.name, config.slo_penalty) for t in tenants}
        self.lambdas = dict(self.base)
        self._integral = dict.fromkeys(self.lambdas, 0.0)
        self._previous = dict.fromkeys(self.lambdas, 0.0)
        self.episode = {t.name: _EpisodeCounts() for t in tenants}

    def reset(self) -> None:
        """Start an episode; in the contract form, first adapt lambda from the one that ended (if any)."""
        if self.config.form == "contract" and self.config.lagrangian.enabled:
            for tenant in self.tenants:
                counts = self.episode[tenant.name]
                if counts.met + counts.missed > 0:
                    self._pid(tenant.name, tenant.attainment_target + self.config.slo_margin - _attainment(counts))
        self.episode = {t.name: _EpisodeCounts() for t in self.tenants}

    def __call__(self, snapshot: MetricsSnapshot, replicas_changed: int, knobs_changed: int
                 ) -> tuple[float, dict[str, float]]:
        """The reward and an ``info`` dict of every term and every tenant's attainment and constraint."""
        goodput = sum(weighted_goodput(snapshot.tenants[t.name], t) for t in self.tenants if t.name in snapshot.tenants)
        per_usd = goodput / snapshot.cost_usd if snapshot.cost_usd > 0 else 0.0
        ratio_term = per_usd / self.config.reference_tokens_per_usd
        surplus = (goodput / self.config.reference_tokens_per_usd - snapshot.cost_usd) / self.config.economics_scale_usd
        economics = surplus if self.config.form == "contract" else ratio_term
        info: dict[str, float] = {"econ/goodput_tokens": goodput, "econ/cost_usd": snapshot.cost_usd,
                                  "econ/tokens_per_dollar": per_usd, "reward/goodput_per_usd": ratio_term,
                                  "reward/econ": economics}
        penalty = sum(self._tenant_terms(tenant, snapshot, info) for tenant in self.tenants)
        switching = self.config.switching_cost * replicas_changed + self.config.knob_change_cost * knobs_changed
        info.update({"reward/slo_penalty": -penalty, "reward/switching_cost": -switching})
        if self.config.form == "interval" and self.config.lagrangian.enabled:
            self._adapt_per_interval(info)
        return economics - penalty - switching, info

    def _tenant_terms(self, tenant: TenantSpec, snapshot: MetricsSnapshot, info: dict[str, float]) -> float:
        """The tenant's penalty this interval (positive: a cost); its figures go into ``info``."""
        metrics, name = snapshot.tenants.get(tenant.name), tenant.name
        met = metrics.counters[GW_MET] if metrics is not None else 0.0
        missed = metrics.counters[GW_MISSED] if metrics is not None else 0.0
        # With nothing judged the interval holds no violation: attainment is vacuously 1.
        attainment = met / (met + missed) if met + missed > 0 else 1.0
        shortfall = max(0.0, tenant.attainment_target - attainment)
        counts = self.episode[name]
        allowed = max(0.0, 1.0 - tenant.attainment_target - self.config.slo_margin)
        constraint = (missed - allowed * (met + missed)) / _expected_judged(tenant, snapshot.interval_s)
        before = counts.constraint
        counts.met, counts.missed, counts.constraint = counts.met + met, counts.missed + missed, before + constraint
        if self.config.form == "interval":
            term = self.lambdas[name] * shortfall
        elif self.config.clip_episode_credit:
            term = self.lambdas[name] * (max(0.0, counts.constraint) - max(0.0, before))
        else:
            term = self.lambdas[name] * constraint
        info.update({f"slo/{name}/attainment": attainment, f"slo/{name}/judged": met + missed,
                     f"slo/{name}/shortfall": shortfall, f"slo/{name}/lambda": self.lambdas[name],
                     f"slo/{name}/constraint": constraint, f"slo/{name}/episode_constraint": counts.constraint,
                     f"slo/{name}/miss_budget_left": miss_budget_left(counts.met, counts.missed,
                                                                      tenant.attainment_target),
                     f"reward/slo/{name}": -term})
        return term

    def _adapt_per_interval(self, info: dict[str, float]) -> None:
        """Interval form: a PID step on each tenant's interval shortfall; lambdas move for the next interval."""
        for tenant in self.tenants:
            if info[f"slo/{tenant.name}/judged"] > 0:
                self._pid(tenant.name, tenant.attainment_target - info[f"slo/{tenant.name}/attainment"])

    def _pid(self, name: str, error: float) -> None:
        """One PID step on ``error`` (> 0 when violated, < 0 with slack); lambda stays in [base, lambda_max]."""
        gains = self.config.lagrangian
        self._integral[name] = max(0.0, self._integral[name] + error)
        derivative = max(0.0, error - self._previous[name])
        self._previous[name] = error
        value = gains.kp * max(0.0, error) + gains.ki * self._integral[name] + gains.kd * derivative
        self.lambdas[name] = min(gains.lambda_max, self.base[name] + value)


def miss_budget_left(met: float, missed: float, target: float) -> float:
    """The fraction of the misses a ``target`` allows for ``met + missed`` judged requests still unspent: 1 with
    no miss (or nothing judged), 0 with attainment exactly at target, negative below it. A target of 1 allows
    none: any miss gives -inf (callers clip)."""
    allowed = (1.0 - target) * (met + missed)
    if missed <= 0:
        return 1.0
    return 1.0 - missed / allowed if allowed > 0 else -float("inf")


def _attainment(counts: _EpisodeCounts) -> float:
    return counts.met / (counts.met + counts.missed)


def _expected_judged(tenant: TenantSpec, interval_s: float) -> float:
    """Requests the tenant sends in an interval at its configured mean rate (a trace-replay tenant's
    ``arrival.rate_rps`` is a placeholder unless set to the trace's mean rate); at least 1."""
    return max(1.0, tenant.arrival.rate_rps * interval_s)
