"""Training settings: PPO hyperparameters (``configs/agent/``) and the run (``configs/train.yaml: run``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.headroom import ACTION_MODES, HeadroomSettings
from disaggpilot.agent.seeds import require_held_out, training_reset_seeds
from disaggpilot.agent.training.teacher_config import TeacherConfig
from disaggpilot.env.errors import check_types, require_seconds, require_seed, require_seeds

VEC_ENVS = ("subproc", "dummy", "ray")


def _require(condition: bool, key: str, value: object, fix: str) -> None:
    if not condition:
        raise PolicyConfigError(f"{key}={value!r} is invalid: {fix}")


@dataclass
class PpoConfig:
    """MaskablePPO hyperparameters (sb3-contrib); see stable-baselines3's PPO for each one's caveats."""

    learning_rate: float = 3e-4
    """Adam step size."""
    n_steps: int = 240
    """Steps per environment per rollout (240 = one 2-hour episode at 30 s)."""
    batch_size: int = 240
    """Minibatch size (steps)."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gamma: float = 0.97
    """Discount per interval (0.97: a horizon of about 33 intervals, 16 minutes)."""
    gae_lambda: float = 0.95
    """GAE bias/variance trade-off."""
    clip_range: float = 0.2
    """PPO ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus: keeps exploring the knob levels."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clip."""
    net_arch: list[int] = field(default_factory=lambda: [128, 128])
    """Hidden layer sizes of the policy and value networks."""
    normalize_observations: bool = True
    """Running mean/variance normalisation of observations (VecNormalize); stored in the bundle."""
    normalize_rewards: bool = True
    """Scale rewards by the running return's standard deviation during training only."""
    clip_obs: float = 10.0
    """Clip of normalised observations."""
    action_mode: str = "delta"
    """``delta`` (replica changes and knob levels) or ``headroom`` (a utilisation level per pool; agent/headroom.py)."""
    headroom: HeadroomSettings = field(default_factory=HeadroomSettings)
    """The utilisation levels and demand window of the ``headroom`` mode."""
    prior_action: list[int] | None = None
    """A warm start: action indices (one per action dimension) that the untrained policy picks with probability
    ``prior_probability`` in each dimension, e.g. the ``headroom_planner``'s levels in ``headroom`` mode. The
    run then validates the untrained model too, so the bundle is never worse on validation than that setting.
    None: the usual near-uniform start."""
    prior_probability: float = 0.9
    """Probability of each ``prior_action`` index in the untrained policy (in (0, 1))."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """A warm start by behaviour cloning: per training scenario, the setting the policy should choose there
    (agent/training/teacher.py). Empty: no teacher. With ``prior_action`` too, the teacher wins."""

    def __post_init__(self) -> None:
        check_types(self, "agent")
        _require(self.learning_rate > 0, "agent.learning_rate", self.learning_rate, "use > 0")
        _require(self.n_steps >= 2, "agent.n_steps", self.n_steps, "use >= 2")
        _require(self.batch_size >= 2, "agent.batch_size", self.batch_size, "use >= 2")
        _require(0 < self.gamma <= 1, "agent.gamma", self.gamma, "use (0, 1]")
        _require(0 <= self.gae_lambda <= 1, "agent.gae_lambda", self.gae_lambda, "use [0, 1]")
        _require(all(int(n) > 0 for n in self.net_arch), "agent.net_arch", self.net_arch, "use positive widths")
        _require(self.action_mode in ACTION_MODES, "agent.action_mode", self.action_mode, f"use one of {ACTION_MODES}")
        _require(0 < self.prior_probability < 1, "agent.prior_probability", self.prior_probability, "use (0, 1)")
        if self.prior_action is not None:
            _require(all(int(i) >= 0 for i in self.prior_action), "agent.prior_action", self.prior_action,
                     "give one level index >= 0 per action dimension, or null")
            self.prior_action = [int(i) for i in self.prior_action]

    @property
    def headroom_settings(self) -> HeadroomSettings | None:
        """The headroom settings when ``action_mode`` is ``headroom``, else None."""
        return self.headroom if self.action_mode == "headroom" else None


@dataclass
class RunConfig:
    """One training run."""

    total_timesteps: int = 200_000
    """Environment steps over all environments that this run takes. A resumed run (``resume_from``) adds them
    to the checkpoint's count, as stable-baselines3 does: a checkpoint at 96,000 steps with 108,000 here ends
    at 204,000."""
    n_envs: int = 2
    """Environments stepped in parallel."""
    vec_env: str = "subproc"
    """``subproc`` (one process per environment), ``dummy`` (in-process) or ``ray`` (Ray actors, ``ray:``)."""
    seed: int = 0
    """Seeds the networks, the environments and every episode (environment ``rank`` is reset with
    ``seed * 1000 + rank`` and ``seed + rank``; none of them may be an evaluation seed, 100-104)."""
    scenarios: list[str] = field(default_factory=lambda: ["steady"])
    """Training mix: each episode draws one (names in configs/scenario/)."""
    validation_scenarios: list[str] = field(default_factory=lambda: ["steady"])
    """Scenarios of the periodic validation against the SLA planner."""
    validation_seeds: list[int] = field(default_factory=lambda: [1000, 1001, 1002, 1003, 1004])
    """Episode seeds of validation, per scenario (kept apart from training seeds and from
    ``agent.seeds.EVALUATION_SEEDS``); each tenant's judged requests are pooled over them."""
    validation_horizon_s: float | None = 3600.0
    """Validation episode length (seconds); None for the scenario's."""
    validation_confidence: float = 0.9
    """Confidence of the one-sided Wilson lower bound on each tenant's pooled attainment that must clear its
    target for the tenant to hold (agent/training/validation.py)."""
    validation_attainment_margin: float | None = None
    """Replaced by ``validation_confidence``: any value but null (or 0, the old default) is refused."""
    eval_every_steps: int = 20_000
    """Validate every this many environment steps (0 disables)."""
    early_stop_patience: int = 6
    """Stop after this many validations without improvement (0 disables)."""
    checkpoint_every_steps: int = 20_000
    """Save a resumable checkpoint every this many steps (0 disables)."""
    resume_from: str | None = None
    """A checkpoint directory to continue from (model.zip and vecnormalize.pkl inside); ``total_timesteps``
    then counts the steps to add."""
    bundle_dir: str = "bundle"
    """Where the final policy bundle goes, relative to the run directory (or absolute)."""
    progress_bar: bool = True
    """Show a progress bar while training."""

    def __post_init__(self) -> None:
        self.seed = require_seed("run.seed", self.seed)
        self.validation_seeds = require_seeds("run.validation_seeds", self.validation_seeds)
        require_seconds("run.validation_horizon_s", self.validation_horizon_s, optional=True)
        check_types(self, "run")
        _require(self.total_timesteps >= 1, "run.total_timesteps", self.total_timesteps, "use >= 1")
        _require(self.n_envs >= 1, "run.n_envs", self.n_envs, "use >= 1")
        _require(self.vec_env in VEC_ENVS, "run.vec_env", self.vec_env, f"use one of {VEC_ENVS}")
        _require(len(self.scenarios) >= 1, "run.scenarios", self.scenarios, "name at least one scenario")
        _require(self.validation_attainment_margin in (None, 0, 0.0), "run.validation_attainment_margin",
                 self.validation_attainment_margin, "it was replaced by run.validation_confidence (a Wilson lower "
                 "bound on each tenant's attainment pooled over run.validation_seeds must clear its target); "
                 "remove the key")
        _require(0.5 <= self.validation_confidence < 1, "run.validation_confidence", self.validation_confidence,
                 "use a probability in [0.5, 1), e.g. 0.9")
        _require(len(self.validation_seeds) >= 1, "run.validation_seeds", self.validation_seeds, "give at least one")
        for key in ("eval_every_steps", "early_stop_patience", "checkpoint_every_steps"):
            _require(getattr(self, key) >= 0, f"run.{key}", getattr(self, key), "use >= 0")
        require_held_out({"run.seed": training_reset_seeds(self.seed, self.n_envs),
                          "run.validation_seeds": self.validation_seeds})
