"""The controller loop (docs/architecture.md): scrape → validate → observe → policy → shield → actuate → export.

Time, the metrics source, the actuator and both deciders are injected, so tests run hours of decisions in
virtual time. A decision never raises: an invalid snapshot, a failing policy, a mismatched bundle or an
actuator that keeps failing hands the decision to the fallback planner (or, if that fails too, holds the
current targets), says why in the log and in ``disaggpilot_controller_fallback_total{reason}``, and returns to
the policy after ``fallback.recovery_intervals`` healthy intervals. Temporary errors (``delay_s``) are
retried with the configured backoff; permanent ones are not.

The policy runs on every valid snapshot, even under the fallback: its observation state stays current, a
failure is seen at once, and its proposal is logged for comparison.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np

from disaggpilot.agent.errors import BundleError
from disaggpilot.agent.policy import Policy, PolicyContext
from disaggpilot.controller.actuators import Actuator
from disaggpilot.controller.clock import Clock
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.controller.decision import FALLBACK, HOLD, POLICY, Decision, replicas_of
from disaggpilot.controller.history import History
from disaggpilot.controller.shield import Shield, ShieldState
from disaggpilot.controller.slo_period import period_so_far, recent_intervals
from disaggpilot.controller.telemetry import ControllerMetrics
from disaggpilot.controller.validate import ACTUATOR, BUNDLE, NO_BUNDLE, SCRAPE, Problem, validate_snapshot
from disaggpilot.controller.validate import POLICY as POLICY_ERROR
from disaggpilot.env import errors as env_errors
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import EnvConfig, interface
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig

log = logging.getLogger("disaggpilot.controller")
T = TypeVar("T")
TEMPORARY: tuple[type[BaseException], ...] = (env_errors.TemporaryError, TimeoutError, ConnectionError)
"""Errors worth retrying; everything else is permanent."""


class Leadership(Protocol):
    """Whether this replica may act (``controller.leader.LeaderElector``); a standby decides in shadow mode."""

    def is_leader(self) -> bool:
        """True while this replica holds the leader lease."""
        ...


class MetricsSource(Protocol):
    """Where snapshots come from: any ``ClusterBackend`` (the simulator now, Prometheus later)."""

    def reset(self, seed: int | None = None) -> MetricsSnapshot:
        """Take the first snapshot."""
        ...

    def advance(self, seconds: float) -> MetricsSnapshot:
        """The interval that just passed."""
        ...


def retry_delay(error: BaseException) -> float | None:
    """The minimum wait before retrying ``error`` (seconds), or None when it is permanent."""
    if not isinstance(error, TEMPORARY):
        return None
    return float(getattr(error, "delay_s", 0.0))


def current_targets(snapshot: MetricsSnapshot) -> dict[str, int]:
    """Replicas asked for per pool now: ready plus starting."""
    return {role: p.replicas_ready + p.replicas_starting for role, p in snapshot.pools.items()}


class ControllerLoop:
    """Runs decisions every ``config.interval_s`` against a source and an actuator.

    Args:
        config: the controller's settings.
        scenario: tenants (SLOs, attainment targets) and pools of the cluster.
        env_config: observation and action layout (as the policy was trained with: a bundle's feature list).
        source: the metrics source.
        actuator: applies shielded actions (active mode only; never called in shadow mode).
        clock: time.
        policy: the learned policy, or None (then ``startup_problem`` says why).
        fallback: the fallback planner, or None (then failures hold the current targets).
        metrics: Prometheus metrics to update, if any.
        startup_problem: why there is no policy (``bundle_mismatch``, ``no_bundle``...).
        seed: seed passed to ``source.reset`` (the simulator's episode).
        leadership: leader election; None acts whenever the mode is active (a single replica).
    """

    def __init__(self, config: ControllerConfig, scenario: ScenarioConfig, env_config: EnvConfig,
                 source: MetricsSource, actuator: Actuator, clock: Clock, policy: Policy | None,
                 fallback: Policy | None, metrics: ControllerMetrics | None = None,
                 startup_problem: Problem | None = None, seed: int | None = None,
                 leadership: Leadership | None = None, wall_clock: Callable[[], float] = time.time) -> None:
        self.config, self.scenario, self.env_config = config, scenario, env_config
        self.source, self.actuator, self.clock, self.wall_clock = source, actuator, clock, wall_clock
        self.policy, self.fallback, self.metrics, self.seed = policy, fallback, metrics, seed
        self.pools, self.tenants = scenario.cluster.enabled_roles(), [t.name for t in scenario.tenants]
        self._check_shield_covers_pools()
        self.shield = Shield(config.shield, {t.name: t.attainment_target for t in scenario.tenants})
        # the environment's codec and observer; a controller's SLO period is the scenario's duration
        self.codec, self.observer = interface(env_config, scenario, period_s=scenario.duration_s)
        if policy is None and startup_problem is None:
            startup_problem = Problem(NO_BUNDLE, "no policy given: running the fallback planner only")
        self.startup_problem = startup_problem
        self.history = History(config.history_intervals)
        self.decisions, self.started, self.primed = 0, False, False
        """Decisions so far; whether :meth:`start` ran; whether the first snapshot came (``source.reset``)."""
        self.last_decision: Decision | None = None
        self.fallback_reason: str | None = startup_problem.reason if startup_problem else None
        self.healthy, self.actuator_failures = 0, 0
        self.shield_state, self.targets = ShieldState(), dict[str, int]()
        self._stop = threading.Event()
        self.leadership, self.leader = leadership, leadership is None
        self.acting = False
        """Whether the current decision may act: active mode and leader."""

    def _check_shield_covers_pools(self) -> None:
        missing = [role for role in self.pools if role not in self.config.shield.pools]
        if missing:
            raise ConfigError(f"controller.shield.pools={sorted(self.config.shield.pools)!r} is invalid: the "
                              f"cluster has pools {list(self.pools)}; add bounds for {missing}")

    # ----- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Prepare the policy and the fallback for this cluster, then take the first snapshot. A source that
        does not answer does not stop the daemon: it holds, says so, and tries again every interval."""
        self.origin_s, self.next_tick_s = self.clock.now(), self.clock.now() + self.config.interval_s
        context = PolicyContext(self.scenario, self.config.interval_s, feature_names=self.observer.names)
        self.policy = self._prepared(self.policy, context, is_fallback=False)
        self.fallback = self._prepared(self.fallback, context, is_fallback=True)
        self.started = True
        self._first_scrape()

    def _first_scrape(self) -> Problem | None:
        """``source.reset`` (retried like any scrape); on success the time axis and the targets start from it."""
        try:
            snapshot = self._retrying(functools.partial(self.source.reset, self.seed))
        except Exception as error:
            problem = Problem(SCRAPE, f"{type(error).__name__}: {str(error)[:200]}")
            log.error("no first snapshot yet, holding and trying again next interval: %s", problem.detail,
                      extra={"fields": {"event": "startup_scrape", "reason": SCRAPE}})
            self._set_first_scrape_pending(True)
            return problem
        self.origin_s = self.clock.now()
        self.history = History(self.config.history_intervals)
        self.history.append(snapshot)
        self.targets, self.primed = current_targets(snapshot), True
        self._set_first_scrape_pending(False)
        self._warm_up(self._join_slo_period())
        if self.policy is not None:
            self.observer.build(snapshot, self.codec.knob_levels(snapshot))  # as the environment's reset does
        return None

    def _join_slo_period(self) -> list[MetricsSnapshot] | None:
        """Start the observation's SLO-period clock where ``controller.slo_period_start``'s calendar is now, with
        the period so far replayed; returns the replayed intervals, or None when no replay was asked for (the
        period starts now)."""
        start = self.config.slo_period_start_unix_s
        if start is None:
            return None
        period = self.observer.period_s
        elapsed = (self.wall_clock() - start) % period
        elapsed = 0.0 if elapsed >= period else elapsed  # float rounding can land on the period itself
        replayed = self._period_so_far(elapsed) if elapsed > 0 else None
        self.observer.join_period(elapsed, replayed or [])
        judged = {name: list(counts) for name, counts in self.observer.memory.judged.items()}
        log.info("joined the SLO period %.0f s in (controller.slo_period_start=%s), requests so far (met, missed): "
                 "%s", elapsed, self.config.slo_period_start, judged,
                 extra={"fields": {"event": "slo_period", "elapsed_s": elapsed, "judged": judged}})
        return replayed

    def _warm_up(self, replayed: list[MetricsSnapshot] | None) -> None:
        """Hand the policy and the fallback, when they keep a window of recent intervals (``warm_up``), the ones
        before the daemon started: those the period's replay read (none if it failed: the store is not asked
        twice), or else the last ones from the source's store. A restart in a burst then sizes for the burst at
        once, not after the window has refilled."""
        wanting = [(policy, int(getattr(policy, "warm_up_intervals", 0) or 0))
                   for policy in (self.policy, self.fallback)
                   if policy is not None and callable(getattr(policy, "warm_up", None))]
        count = max((intervals for _, intervals in wanting), default=0)
        if count <= 0:
            return
        tenants = [spec.name for spec in self.scenario.tenants]
        recent = replayed[-count:] if replayed is not None else \
            recent_intervals(self.source, tenants, count, self.config.interval_s, self._retrying)
        if not recent:
            return
        for policy, intervals in wanting:
            if intervals > 0:
                policy.warm_up(recent[-intervals:])  # type: ignore[attr-defined]
        log.info("warmed up with %d intervals from before the daemon started: %s", len(recent),
                 [getattr(policy, "name", type(policy).__name__) for policy, _ in wanting],
                 extra={"fields": {"event": "warm_up", "intervals": len(recent)}})

    def _period_so_far(self, elapsed_s: float) -> list[MetricsSnapshot]:
        """The SLO period's intervals before the daemon started (:func:`period_so_far`); the tenants it could not
        count are exported as ``slo_period_counts_unknown``."""
        tenants = [spec.name for spec in self.scenario.tenants]
        history, unknown = period_so_far(self.source, tenants, elapsed_s, self.config.interval_s, self._retrying)
        if self.metrics is not None:
            self.metrics.set_slo_period_counts_unknown(len(unknown))
        return history

    def _set_first_scrape_pending(self, pending: bool) -> None:
        if self.metrics is not None:
            self.metrics.set_startup_scrape_pending(pending)

    def _prepared(self, policy: Policy | None, context: PolicyContext, is_fallback: bool) -> Policy | None:
        if policy is None:
            return None
        try:
            policy.reset(context)
            return policy
        except Exception as error:
            reason = BUNDLE if isinstance(error, BundleError) else POLICY_ERROR
            problem = Problem(reason, f"{type(error).__name__}: {error}")
            log.error("%s refused: %s", "fallback planner" if is_fallback else "policy", problem.detail,
                      extra={"fields": {"event": "startup", "reason": reason}})
            if not is_fallback:
                self.startup_problem, self.fallback_reason = problem, problem.reason
            return None

    def run(self, max_decisions: int | None = None) -> int:
        """Decide every interval until :meth:`stop` or ``max_decisions`` more decisions; returns the count."""
        if not self.started:
            self.start()
        done = 0
        while not self._stop.is_set() and (max_decisions is None or done < max_decisions):
            self.clock.sleep(self.next_tick_s - self.clock.now())
            if self._stop.is_set():
                break
            self.decide()
            done += 1
            self.next_tick_s = max(self.next_tick_s + self.config.interval_s, self.clock.now())
        return done

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current decision (safe from a signal handler)."""
        self._stop.set()
        interrupt = getattr(self.clock, "interrupt", None)
        if callable(interrupt):
            interrupt()

    @property
    def now_s(self) -> float:
        """Controller time since the first scrape, on the snapshots' time axis (seconds)."""
        return self.clock.now() - self.origin_s

    # ----- one decision ---------------------------------------------------------------------------------
    def decide(self) -> Decision:
        """One interval: scrape, validate, decide, shield, actuate (active mode), log and export."""
        self.decisions += 1
        self._update_leadership()
        decision = Decision(self.decisions, self.clock.now(), "active" if self.acting else "shadow")
        if not self.primed:
            return self._hold_until_first_snapshot(decision)
        snapshot, problem = self._scrape()
        started = time.perf_counter()
        decision.snapshot = snapshot
        if snapshot is not None and problem is None:
            problem = validate_snapshot(snapshot, self.now_s, self.config.fallback.staleness_limit_s,
                                        self.pools, self.tenants)
        decision.snapshot_valid = snapshot is not None and problem is None
        problem = self._choose(decision, problem)
        decision.latency_s = time.perf_counter() - started
        self._actuate(decision)
        self._settle(decision, problem)
        self._report(decision)
        self.last_decision = decision
        return decision

    def _hold_until_first_snapshot(self, decision: Decision) -> Decision:
        """No snapshot has come yet: try the first scrape again and hold, whether it answers or not (the first
        snapshot starts the time axis; the next interval decides on it)."""
        problem = self._first_scrape()
        if problem is not None:
            decision.reason, decision.detail = problem.reason, problem.detail
        self._report(decision)
        self.last_decision = decision
        return decision

    def _update_leadership(self) -> None:
        """A standby decides as in shadow mode; on becoming leader, our targets start from the cluster's."""
        self.leader = self.leadership is None or self.leadership.is_leader()
        acting = self.config.mode == "active" and self.leader
        if acting and not self.acting and self.history:
            self.targets = current_targets(self.history[-1])
        self.acting = acting

    def _scrape(self) -> tuple[MetricsSnapshot | None, Problem | None]:
        try:
            return self._retrying(lambda: self.source.advance(self.config.interval_s)), None
        except Exception as error:
            return None, Problem(SCRAPE, f"{type(error).__name__}: {error}")

    def _choose(self, decision: Decision, problem: Problem | None) -> Problem | None:
        """Fill in the proposals, the source and the shielded action; returns the decision's problem, if any."""
        if decision.snapshot_valid:
            assert decision.snapshot is not None
            self.history.append(decision.snapshot)
            decision.policy_action, policy_problem = self._ask_policy(decision.snapshot)
            problem = problem or policy_problem
        problem = problem or self.startup_problem
        decision.source = self._source(problem)
        decision.reason = None if decision.source == POLICY else self.fallback_reason
        decision.detail = problem.detail if problem is not None else None
        decision.recovering = decision.source == FALLBACK and problem is None
        proposal = decision.policy_action if decision.source == POLICY else self._ask_fallback(decision)
        self._shield(decision, proposal)
        return problem

    def _shield(self, decision: Decision, proposal: ClusterAction | None) -> None:
        """The shielded action (or ``hold`` when there is no proposal)."""
        if proposal is None:
            decision.source = HOLD
            return
        blind = not decision.snapshot_valid  # the proposal saw only old data: no scale-down (the shield's rule)
        outcome = self.shield.apply(proposal, self.history[-1], self._previous(), self.now_s, self.shield_state,
                                    blind=blind)
        decision.action, decision.shield_reasons, self.shield_state = outcome.action, outcome.reasons, outcome.state

    def _ask_policy(self, snapshot: MetricsSnapshot) -> tuple[ClusterAction | None, Problem | None]:
        if self.policy is None:
            return None, None
        try:
            observation = self.observer.build(snapshot, self.codec.knob_levels(snapshot))
            action = self.policy.act(observation, self.history)
            if not isinstance(action, ClusterAction):
                raise TypeError(f"the policy returned {type(action).__name__}, not a ClusterAction")
            return action, None
        except Exception as error:
            return None, Problem(POLICY_ERROR, f"{type(error).__name__}: {error}")

    def _ask_fallback(self, decision: Decision) -> ClusterAction | None:
        if self.fallback is None:
            return None
        try:
            decision.fallback_action = self.fallback.act(np.zeros(0, dtype=np.float32), self.history)
            return decision.fallback_action
        except Exception as error:
            log.warning("the fallback planner failed, holding the current targets: %s: %s",
                        type(error).__name__, error, extra={"fields": {"event": "fallback_failed"}})
            return None

    def _source(self, problem: Problem | None) -> str:
        """Policy or fallback, updating the fallback state with this decision's problem."""
        if problem is not None:
            if self.fallback_reason != problem.reason:
                log.warning("falling back: %s", problem.detail,
                            extra={"fields": {"event": "fallback", "reason": problem.reason}})
            self.fallback_reason, self.healthy = problem.reason, 0
            return FALLBACK
        if self.fallback_reason is None:
            return POLICY
        if self.healthy >= self.config.fallback.recovery_intervals:
            log.info("back to the policy after %d healthy intervals", self.healthy,
                     extra={"fields": {"event": "recovered", "reason": self.fallback_reason}})
            self.fallback_reason, self.healthy = None, 0
            return POLICY
        return FALLBACK

    def _previous(self) -> dict[str, int]:
        """The targets rules compare against: ours when we act, the cluster's own in shadow mode."""
        return dict(self.targets) if self.acting else current_targets(self.history[-1])

    # ----- acting and accounting ------------------------------------------------------------------------
    def _actuate(self, decision: Decision) -> None:
        """Apply the action (active mode); cooldowns start once it is applied (or decided, in shadow mode)."""
        action, previous = decision.action, self._previous()
        if action is None:
            return
        if self.acting:
            try:
                self._retrying(functools.partial(self._fenced_apply, action))
            except env_errors.FencedError as error:
                self._abandon(decision, error)
                return
            except Exception as error:
                decision.actuator_error = f"{type(error).__name__}: {str(error)[:200]}"
                permanent = retry_delay(error) is None
                self.actuator_failures += self.config.fallback.max_actuator_failures if permanent else 1
                return
            decision.applied, self.actuator_failures = True, 0
            self.targets.update(replicas_of(action))
        self.shield_state = self.shield.record(self.shield_state, previous, action, self.now_s)

    def _fenced_apply(self, action: ClusterAction) -> None:
        """Apply ``action`` unless leadership was lost since the decision began (checked before every try; a
        fenced actuator checks again before each of its API calls)."""
        if self.leadership is not None and not self.leadership.is_leader():
            raise env_errors.FencedError("leadership lost between deciding and writing")
        self.actuator.apply(action)

    def _abandon(self, decision: Decision, error: env_errors.FencedError) -> None:
        """Leadership was lost before a write: drop the rest of the decision; the new leader acts instead."""
        decision.abandoned, decision.actuator_error = True, f"FencedError: {str(error)[:200]}"
        self.leader = self.acting = False
        log.warning("decision abandoned: %s", error, extra={"fields": {"event": "abandoned"}})

    def _settle(self, decision: Decision, problem: Problem | None) -> None:
        """Count healthy intervals under the fallback; fall back when the actuator keeps failing."""
        if decision.actuator_error is not None and self.actuator_failures >= self.config.fallback.max_actuator_failures:
            if self.fallback_reason != ACTUATOR:
                log.warning("falling back: the actuator failed %d times in a row", self.actuator_failures,
                            extra={"fields": {"event": "fallback", "reason": ACTUATOR}})
            self.fallback_reason, self.healthy = ACTUATOR, 0
        elif decision.actuator_error is not None or problem is not None:
            self.healthy = 0
        elif self.fallback_reason is not None and self.startup_problem is None:
            self.healthy += 1

    def _report(self, decision: Decision) -> None:
        """Export the decision's metrics, then log its line (so a reader of the line sees the metrics)."""
        if self.metrics is not None:
            self.metrics.record(decision)
            self.metrics.set_leader(self.leader)
            self.metrics.set_slo_period_elapsed(self.observer.memory.elapsed_s)
        fields = {"event": "decision", **decision.record(), "decider": self._decider(decision), "leader": self.leader}
        log.info("decision", extra={"fields": fields})

    def _decider(self, decision: Decision) -> str | None:
        """Name of what chose the action: the policy (``ppo``) or the fallback planner; None for a hold."""
        chosen = {POLICY: self.policy, FALLBACK: self.fallback}.get(decision.source)
        return getattr(chosen, "name", None)

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call()``, retried on temporary errors after the backoff schedule's waits."""
        for wait in self.config.fallback.backoff.delays():
            try:
                return call()
            except Exception as error:
                minimum = retry_delay(error)
                if minimum is None or self._stop.is_set():
                    raise
                delay = min(max(wait, minimum), self.config.fallback.backoff.max_s)
                log.warning("retrying in %.1f s after %s: %s", delay, type(error).__name__, error,
                            extra={"fields": {"event": "retry"}})
                self.clock.sleep(delay)
        return call()
