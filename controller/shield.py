"""The shield: every action, the policy's or the fallback's, passes these rules before the cluster sees it.

Rules, per pool, in order (each names itself in the outcome's ``reasons`` when it changed a target):

- ``max_step``: at most ``max_step`` replicas away from the previous target.
- ``up_cooldown``: no scale-up until ``up_cooldown_s`` after the pool's last scale-up.
- ``blind``: no scale-down when the decision has no fresh valid snapshot (the scrape failed, or it was stale or
  invalid): whatever planned it saw only old data. Such intervals also reset the pool's ``hysteresis`` streak,
  so a scale-down after them needs ``down_hysteresis_intervals`` intervals of fresh data.
- ``down_cooldown``: no scale-down until ``down_cooldown_s`` after the pool's last change (up or down).
- ``hysteresis``: a scale-down only once asked for ``down_hysteresis_intervals`` consecutive intervals.
- ``starting``: no scale-down while any of the pool's replicas is still starting.
- ``tenant_floor``: no scale-down while a tenant's attainment is below its target minus the margin.
- ``bounds``: within the pool's ``min_replicas..max_replicas`` (hard: overrides the holds above).

then over the cluster: ``gpu_budget`` trims increases, largest first, until the GPUs billed (targets plus
draining replicas) fit the budget. A pool without configured bounds is dropped (``unknown_pool``). Knobs pass
unchanged. The rules are pure: state (streaks, cooldown stamps) goes in and out explicitly, and
:meth:`Shield.record` stamps cooldowns only once an action has really been applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from disaggpilot.controller.config import ShieldConfig
from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.metrics import MetricsSnapshot


@dataclass(frozen=True)
class ShieldState:
    """What the rules remember between intervals (never mutated; every update returns a new one).

    Attributes:
        last_up_s: per pool, controller time of its last applied scale-up (seconds).
        last_change_s: per pool, controller time of its last applied change, up or down (seconds).
        down_streak: per pool, consecutive intervals a scale-down has been asked for (intervals).
    """

    last_up_s: Mapping[str, float] = field(default_factory=dict)
    last_change_s: Mapping[str, float] = field(default_factory=dict)
    down_streak: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ShieldOutcome:
    """The shielded action, the rules that changed it, and the state to carry to the next interval."""

    action: ClusterAction
    reasons: tuple[str, ...]
    state: ShieldState


@dataclass(frozen=True)
class _Context:
    snapshot: MetricsSnapshot
    previous: Mapping[str, int]
    now_s: float
    state: ShieldState
    floor_breached: bool
    blind: bool


Rule = Callable[[str, int, _Context], int]


class Shield:
    """Applies :class:`ShieldConfig`'s rules to proposed actions.

    Args:
        config: the rules' settings.
        tenant_targets: attainment target per tenant (fraction), for the tenant floors.
    """

    def __init__(self, config: ShieldConfig, tenant_targets: Mapping[str, float]) -> None:
        self.config, self.tenant_targets = config, dict(tenant_targets)
        self.rules: tuple[tuple[str, Rule], ...] = (
            ("max_step", self._max_step), ("up_cooldown", self._up_cooldown),
            ("blind", self._blind), ("down_cooldown", self._down_cooldown), ("hysteresis", self._hysteresis),
            ("starting", self._starting), ("tenant_floor", self._tenant_floor), ("bounds", self._bounds))

    def apply(self, proposal: ClusterAction, snapshot: MetricsSnapshot, previous: Mapping[str, int],
              now_s: float, state: ShieldState, blind: bool = False) -> ShieldOutcome:
        """Shield ``proposal`` against the last valid ``snapshot`` and the ``previous`` targets at ``now_s``;
        ``blind`` when this interval brought no fresh valid snapshot (``snapshot`` is an older one)."""
        streaks = {role: 0 for role in self.config.pools} if blind else self._streaks(proposal, previous, state)
        state = replace(state, down_streak=streaks)
        context = _Context(snapshot, previous, now_s, state, self.floor_breached(snapshot), blind)
        reasons: list[str] = []
        pools: dict[str, PoolTarget] = {}
        for role, target in proposal.pools.items():
            if role not in self.config.pools:
                reasons.append("unknown_pool")
                continue
            pools[role] = self._pool(role, target, context, reasons)
        pools = self._fit_budget(pools, snapshot, previous, reasons)
        return ShieldOutcome(ClusterAction(pools), tuple(dict.fromkeys(reasons)), state)

    def record(self, state: ShieldState, previous: Mapping[str, int], action: ClusterAction,
               now_s: float) -> ShieldState:
        """The state after ``action`` was applied at ``now_s``: cooldowns start for the pools it changed."""
        ups, changes = dict(state.last_up_s), dict(state.last_change_s)
        for role, target in action.pools.items():
            before = previous.get(role)
            if target.replicas is None or before is None or target.replicas == before:
                continue
            changes[role] = now_s
            if target.replicas > before:
                ups[role] = now_s
        return replace(state, last_up_s=ups, last_change_s=changes)

    def floor_breached(self, snapshot: MetricsSnapshot) -> bool:
        """True when a tenant's attainment is below its target minus the margin (NaN: no judged request)."""
        if not self.config.tenant_floors:
            return False
        margin = self.config.tenant_floor_margin
        for name, target in self.tenant_targets.items():
            tenant = snapshot.tenants.get(name)
            attainment = tenant.attainment() if tenant is not None else math.nan
            if math.isfinite(attainment) and attainment < target - margin:
                return True
        return False

    # ----- per-pool rules -------------------------------------------------------------------------------
    def _pool(self, role: str, target: PoolTarget, context: _Context, reasons: list[str]) -> PoolTarget:
        if target.replicas is None:
            return target
        wanted = target.replicas
        for name, rule in self.rules:
            shielded = rule(role, wanted, context)
            if shielded != wanted:
                reasons.append(name)
                wanted = shielded
        return replace(target, replicas=wanted)

    def _streaks(self, proposal: ClusterAction, previous: Mapping[str, int], state: ShieldState) -> dict[str, int]:
        streaks = {}
        for role in self.config.pools:
            target = proposal.pools.get(role)
            asked_down = target is not None and target.replicas is not None and target.replicas < previous.get(
                role, target.replicas)
            streaks[role] = state.down_streak.get(role, 0) + 1 if asked_down else 0
        return streaks

    def _max_step(self, role: str, wanted: int, context: _Context) -> int:
        before, step = context.previous.get(role, wanted), self.config.max_step
        return max(before - step, min(before + step, wanted))

    def _up_cooldown(self, role: str, wanted: int, context: _Context) -> int:
        before, last = context.previous.get(role, wanted), context.state.last_up_s.get(role)
        cooling = last is not None and context.now_s - last < self.config.up_cooldown_s
        return before if wanted > before and cooling else wanted

    def _down_cooldown(self, role: str, wanted: int, context: _Context) -> int:
        before, last = context.previous.get(role, wanted), context.state.last_change_s.get(role)
        cooling = last is not None and context.now_s - last < self.config.down_cooldown_s
        return before if wanted < before and cooling else wanted

    def _hysteresis(self, role: str, wanted: int, context: _Context) -> int:
        before = context.previous.get(role, wanted)
        settled = context.state.down_streak.get(role, 0) >= self.config.down_hysteresis_intervals
        return before if wanted < before and not settled else wanted

    def _starting(self, role: str, wanted: int, context: _Context) -> int:
        before, pool = context.previous.get(role, wanted), context.snapshot.pools.get(role)
        starting = pool is not None and pool.replicas_starting > 0 and self.config.hold_down_while_starting
        return before if wanted < before and starting else wanted

    def _tenant_floor(self, role: str, wanted: int, context: _Context) -> int:
        before = context.previous.get(role, wanted)
        return before if wanted < before and context.floor_breached else wanted

    def _blind(self, role: str, wanted: int, context: _Context) -> int:
        before = context.previous.get(role, wanted)
        return before if wanted < before and context.blind else wanted

    def _bounds(self, role: str, wanted: int, context: _Context) -> int:
        bounds = self.config.pools[role]
        return max(bounds.min_replicas, min(bounds.max_replicas, wanted))

    # ----- cluster rule ---------------------------------------------------------------------------------
    def _fit_budget(self, pools: dict[str, PoolTarget], snapshot: MetricsSnapshot, previous: Mapping[str, int],
                    reasons: list[str]) -> dict[str, PoolTarget]:
        """Trim increases, largest first, until targets plus draining replicas fit the GPU budget."""
        counts = {role: t.replicas if t.replicas is not None else previous.get(role, 0) for role, t in pools.items()}
        counts.update({role: n for role, n in previous.items() if role not in counts})
        gpus = {role: pool.gpus_per_replica for role, pool in snapshot.pools.items()}
        draining = sum(p.replicas_draining * p.gpus_per_replica for p in snapshot.pools.values())
        trimmed = False
        while draining + sum(n * gpus.get(role, 1) for role, n in counts.items()) > self.config.gpu_budget:
            growing = [role for role in pools if counts[role] > previous.get(role, counts[role])]
            if not growing:
                break
            role = max(growing, key=lambda r: counts[r] - previous.get(r, counts[r]))
            counts[role], trimmed = counts[role] - 1, True
        if not trimmed:
            return pools
        reasons.append("gpu_budget")
        return {role: replace(t, replicas=counts[role]) if t.replicas is not None else t for role, t in pools.items()}
