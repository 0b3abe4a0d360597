"""The teacher's settings (``agent.teacher``), apart from the teacher itself (``teacher.py``), so that composing
and checking a training config never imports torch (about 2 s of every ``disaggpilot`` command's start)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.seeds import require_held_out
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.workload import RateChange


@dataclass
class TeacherConfig:
    """Behaviour cloning from per-scenario settings (``agent.teacher``); empty ``actions`` turns it off."""

    actions: dict[str, list[int]] = field(default_factory=dict)
    """The teacher's action indices per training scenario (one index per action dimension, as in
    ``agent.prior_action``): what the policy should choose on that scenario's observations."""
    after_burst_actions: dict[str, list[int]] = field(default_factory=dict)
    """The teacher's action indices per scenario once the episode's last scripted burst (a tenant's rate
    change above 1x) has ended and ``after_burst_settle_s`` has passed; scenarios not named keep ``actions``
    all episode. A floor held against a burst that has come and gone buys nothing more on these workloads
    (docs/experiments/2026-12-07-after-burst.md); the teacher knows the burst's end (it sees the episode),
    the student must recognise it from what it measures."""
    after_burst_settle_s: float = 300.0
    """Time after the burst's end before ``after_burst_actions`` applies (seconds; a demand window of 10 x 30 s
    still remembers the burst until then)."""
    before_burst_actions: dict[str, list[int]] = field(default_factory=dict)
    """The teacher's action indices per scenario until ``before_burst_lead_s`` before the episode's first
    scripted burst starts; scenarios not named keep ``actions`` from the start. Only a student that can tell
    the time of the burst from what it observes can follow it: a burst at a known time (a scheduled launch,
    a daily peak), trained without ``env.randomization.burst_shift_s``, read from the clock features."""
    before_burst_lead_s: float = 300.0
    """How long before the first burst starts ``actions`` applies again (seconds; it must cover the cold start,
    so that the floor is ready when the burst comes)."""
    seeds: list[int] = field(default_factory=lambda: [2000, 2001, 2002, 2003, 2004, 2005])
    """Episode seeds of the teacher's rollouts, per scenario (never evaluation or validation seeds)."""
    dagger_rounds: int = 2
    """Rounds that roll out the student and label the states it reaches (0: plain behaviour cloning)."""
    epochs: int = 20
    """Passes over the aggregated data after each round."""
    learning_rate: float = 1e-3
    """Adam step size of the cloning loss."""
    batch_size: int = 256
    """Minibatch size (observations)."""

    def __post_init__(self) -> None:
        for key in ("actions", "after_burst_actions", "before_burst_actions"):
            setattr(self, key, {str(name): [int(i) for i in indices]
                                for name, indices in dict(getattr(self, key)).items()})
        for key in ("after_burst_settle_s", "before_burst_lead_s"):
            if float(getattr(self, key)) < 0:
                raise PolicyConfigError(f"agent.teacher.{key}={getattr(self, key)!r} is invalid: use >= 0 seconds")
        for key in ("dagger_rounds", "epochs"):
            if int(getattr(self, key)) < 0:
                raise PolicyConfigError(f"agent.teacher.{key}={getattr(self, key)!r} is invalid: use >= 0")
        if self.learning_rate <= 0 or self.batch_size < 1 or not self.seeds:
            raise PolicyConfigError(f"agent.teacher: learning_rate={self.learning_rate!r}, batch_size="
                                    f"{self.batch_size!r}, seeds={self.seeds!r}: use a rate > 0, a batch >= 1 "
                                    "and at least one seed")
        self.seeds = [int(s) for s in self.seeds]
        require_held_out({"agent.teacher.seeds": self.seeds})

    @property
    def enabled(self) -> bool:
        """Whether a teacher is configured."""
        return bool(self.actions)

    def label(self, scenario: str, nvec: Sequence[int]) -> np.ndarray:
        """The teacher's action for ``scenario``, checked against the action space's sizes ``nvec``."""
        if scenario not in self.actions:
            raise PolicyConfigError(f"agent.teacher.actions has no entry for training scenario {scenario!r}: "
                                    f"add one (it has {sorted(self.actions)})")
        return _checked(self.actions[scenario], nvec, f"actions.{scenario}")

    def label_at(self, world: ScenarioConfig, time_s: float, nvec: Sequence[int]) -> np.ndarray:
        """The teacher's action at ``time_s`` (seconds into the episode) of an episode played in ``world``
        (the scenario as randomised for the episode, so a shifted burst is where the episode has it)."""
        after = self.after_burst_actions.get(world.name)
        ended = last_burst_end_s(world)
        if after is not None and ended is not None and time_s >= ended + self.after_burst_settle_s:
            return _checked(after, nvec, f"after_burst_actions.{world.name}")
        before = self.before_burst_actions.get(world.name)
        starts = first_burst_start_s(world)
        if before is not None and starts is not None and time_s < starts - self.before_burst_lead_s:
            return _checked(before, nvec, f"before_burst_actions.{world.name}")
        return self.label(world.name, nvec)


def first_burst_start_s(world: ScenarioConfig) -> float | None:
    """When the first of the tenants' scripted rate increases starts (seconds); None without one."""
    starts = [burst.start_s for burst in _bursts(world)]
    return min(starts) if starts else None


def last_burst_end_s(world: ScenarioConfig) -> float | None:
    """When the last of the tenants' scripted rate increases with an end ends (seconds); None without one."""
    ends = [burst.start_s + burst.duration_s for burst in _bursts(world) if np.isfinite(burst.duration_s)]
    return max(ends) if ends else None


def _bursts(world: ScenarioConfig) -> list[RateChange]:
    """Every tenant's scripted rate changes above 1x."""
    return [change for tenant in world.tenants for change in tenant.arrival.changes if change.multiplier > 1.0]


def _checked(action: list[int], nvec: Sequence[int], key: str) -> np.ndarray:
    if len(action) != len(nvec) or not all(0 <= a < n for a, n in zip(action, nvec, strict=False)):
        raise PolicyConfigError(f"agent.teacher.{key}={action} does not fit the action space "
                                f"{list(nvec)}: give one index per dimension, each below its size")
    return np.asarray(action, dtype=np.int64)
