"""The reward (DESIGN §2): goodput tokens per dollar under per-tenant SLO penalties, minus switching costs.

``r = goodput_per_usd / reference_tokens_per_usd
      - sum_t lambda_t * max(0, target_t - attainment_t)
      - switching_cost * replicas changed - knob_change_cost * knobs changed``

In Lagrangian mode each ``lambda_t`` is a multiplier adapted from the tenant's constraint violation by a
damped PID update (Stooke et al., "Responsive Safety in RL by PID Lagrangian Methods", 2020), so the
penalty grows exactly as much as needed to hold the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from env.errors import check_types, require
from env.metrics import GW_MET, GW_MISSED, MetricsSnapshot
from env.summary import weighted_goodput
from env.workload import TenantSpec


@dataclass
class LagrangianConfig:
    """PID-damped adaptation of the per-tenant penalty weights (training only)."""

    enabled: bool = False
    """Adapt lambda_t from violations instead of holding it fixed."""
    kp: float = 1.0
    """Proportional gain on the current violation (lambda per unit of attainment shortfall)."""
    ki: float = 0.05
    """Integral gain on accumulated violation, per interval."""
    kd: float = 0.5
    """Derivative gain on the increase of the violation."""
    lambda_max: float = 100.0
    """Upper bound on every lambda_t."""

    def __post_init__(self) -> None:
        check_types(self, "reward.lagrangian")
        for key in ("kp", "ki", "kd"):
            require(getattr(self, key) >= 0, f"reward.lagrangian.{key}", getattr(self, key), "use a gain >= 0")
        require(self.lambda_max > 0, "reward.lagrangian.lambda_max", self.lambda_max, "use > 0")


@dataclass
class RewardConfig:
    """Reward weights. Tokens per dollar are divided by a reference so typical rewards are O(1)."""

    reference_tokens_per_usd: float = 1.0e6
    """Goodput tokens per USD that scores 1.0 (tokens per USD)."""
    slo_penalty: float = 10.0
    """lambda_t for every tenant unless ``tenant_penalties`` names it (reward per unit of shortfall)."""
    tenant_penalties: dict[str, float] = field(default_factory=dict)
    """Per-tenant lambda_t overrides, by tenant name."""
    switching_cost: float = 0.01
    """Penalty per replica added or removed (reward units per replica)."""
    knob_change_cost: float = 0.05
    """Penalty per batch knob changed (reward units per change): a change restarts pods in production."""
    lagrangian: LagrangianConfig = field(default_factory=LagrangianConfig)
    """Adaptive lambda_t for training."""

    def __post_init__(self) -> None:
        if isinstance(self.lagrangian, dict):
            self.lagrangian = LagrangianConfig(**self.lagrangian)
        check_types(self, "reward")
        require(self.reference_tokens_per_usd > 0, "reward.reference_tokens_per_usd",
                self.reference_tokens_per_usd, "use a positive number of tokens per USD")
        for key in ("slo_penalty", "switching_cost", "knob_change_cost"):
            require(getattr(self, key) >= 0, f"reward.{key}", getattr(self, key), "use a value >= 0")
        for name, value in self.tenant_penalties.items():
            require(value >= 0, f"reward.tenant_penalties.{name}", value, "use a value >= 0")


class RewardCalculator:
    """Computes the reward and its terms from one snapshot and the changes the action made."""

    def __init__(self, config: RewardConfig, tenants: Sequence[TenantSpec]) -> None:
        self.config, self.tenants = config, list(tenants)
        self.lambdas = {t.name: config.tenant_penalties.get(t.name, config.slo_penalty) for t in tenants}
        self._integral = dict.fromkeys(self.lambdas, 0.0)
        self._previous = dict.fromkeys(self.lambdas, 0.0)

    def __call__(self, snapshot: MetricsSnapshot, replicas_changed: int, knobs_changed: int
                 ) -> tuple[float, dict[str, float]]:
        """The reward and an ``info`` dict of every term and every tenant's attainment."""
        goodput = sum(weighted_goodput(snapshot.tenants[t.name], t) for t in self.tenants if t.name in snapshot.tenants)
        per_usd = goodput / snapshot.cost_usd if snapshot.cost_usd > 0 else 0.0
        economics = per_usd / self.config.reference_tokens_per_usd
        info: dict[str, float] = {"econ/goodput_tokens": goodput, "econ/cost_usd": snapshot.cost_usd,
                                  "econ/tokens_per_dollar": per_usd}
        penalty = 0.0
        for tenant in self.tenants:
            metrics = snapshot.tenants.get(tenant.name)
            judged = metrics.counters[GW_MET] + metrics.counters[GW_MISSED] if metrics is not None else 0.0
            # With nothing judged the interval holds no violation: attainment is vacuously 1.
            attainment = metrics.attainment() if metrics is not None and judged > 0 else 1.0
            shortfall = max(0.0, tenant.attainment_target - attainment)
            penalty += self.lambdas[tenant.name] * shortfall
            info[f"slo/{tenant.name}/attainment"] = attainment
            info[f"slo/{tenant.name}/judged"] = judged
            info[f"slo/{tenant.name}/shortfall"] = shortfall
            info[f"slo/{tenant.name}/lambda"] = self.lambdas[tenant.name]
        switching = self.config.switching_cost * replicas_changed + self.config.knob_change_cost * knobs_changed
        info.update({"reward/goodput_per_usd": economics, "reward/slo_penalty": -penalty,
                     "reward/switching_cost": -switching})
        if self.config.lagrangian.enabled:
            self._adapt(info)
        return economics - penalty - switching, info

    def _adapt(self, info: dict[str, float]) -> None:
        """PID step on each tenant's violation; lambdas move for the next interval."""
        gains = self.config.lagrangian
        for tenant in self.tenants:
            if info[f"slo/{tenant.name}/judged"] <= 0:
                continue
            attainment = info[f"slo/{tenant.name}/attainment"]
            error = tenant.attainment_target - attainment  # > 0 when violated, < 0 with slack
            self._integral[tenant.name] = max(0.0, self._integral[tenant.name] + error)
            derivative = max(0.0, error - self._previous[tenant.name])
            self._previous[tenant.name] = error
            value = gains.kp * max(0.0, error) + gains.ki * self._integral[tenant.name] + gains.kd * derivative
            base = self.config.tenant_penalties.get(tenant.name, self.config.slo_penalty)
            self.lambdas[tenant.name] = min(gains.lambda_max, base + value)
