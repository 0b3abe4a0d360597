"""The controller's two deciders: the learned policy (a verified bundle) and the fallback planner.

A bundle is loaded only from the configured path; its content hash is pinned when ``expected_hash`` is set
(active mode requires it unless ``allow_unpinned``; an unpinned bundle is loaded with a warning),
and its observation/action spec must equal the one this controller builds: same features, pools, knob levels
and interval, in the action mode the bundle was trained in (``delta``: replica steps and knob levels;
``headroom``: utilisation levels a sizer turns into replicas). All this is checked before the model is
unpickled. Any failure leaves no policy and a :class:`~controller.validate.Problem` (``bundle_mismatch`` or
``policy_error``): the fallback then runs.
"""

from __future__ import annotations

import logging
from typing import Any

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.bundle import load_bundle, validate_spec
from disaggpilot.agent.errors import BundleError
from disaggpilot.agent.headroom import headroom_spec, settings_from_spec
from disaggpilot.agent.policy import Policy, observing_as
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.controller.validate import BUNDLE, NO_BUNDLE, POLICY, Problem
from disaggpilot.env.cluster_env import EnvConfig, scenario_spec
from disaggpilot.env.scenario import ScenarioConfig

log = logging.getLogger("disaggpilot.controller")


def expected_spec(scenario: ScenarioConfig, env_config: EnvConfig, bundle_spec: dict[str, Any] | None = None,
                  where: object = "bundle") -> dict[str, Any]:
    """The observation/action spec a bundle must have been trained with to run on this cluster, in the action
    mode ``bundle_spec`` declares (``delta`` when it declares none). Derived from the settings: no simulator
    is built."""
    spec = scenario_spec(env_config, scenario)
    headroom = settings_from_spec(bundle_spec or {}, where)
    return headroom_spec(spec, headroom) if headroom else spec


def load_policy(config: ControllerConfig, scenario: ScenarioConfig, env_config: EnvConfig
                ) -> tuple[Policy | None, Problem | None]:
    """The bundle's policy, or None and why not (the loop then runs the fallback)."""
    if config.bundle is None:
        return None, Problem(NO_BUNDLE, "controller.bundle is null: running the fallback planner only")
    if config.expected_hash is None:
        log.warning("policy bundle %s is not pinned (controller.expected_hash is null): any code slipped into it "
                    "runs; pin it with the output of `python -m disaggpilot.agent.bundle <dir>` on a trusted copy",
                    config.bundle,
                    extra={"fields": {"event": "startup", "bundle_pinned": False}})
    try:
        bundle = load_bundle(config.bundle, expected_hash=config.expected_hash)
        observing = observing_as(bundle.trained_observation(), env_config)  # as environment_for will
        validate_spec(bundle.spec, expected_spec(scenario, observing, bundle.spec, bundle.path), bundle.path)
        from disaggpilot.agent.ppo_policy import PpoPolicy  # deferred: imports torch

        return PpoPolicy(config.bundle, expected_hash=config.expected_hash), None
    except BundleError as error:
        return None, Problem(BUNDLE, str(error))
    except Exception as error:  # a corrupt archive, an incompatible library: never crash the daemon
        return None, Problem(POLICY, f"{type(error).__name__}: {error}")


def make_fallback(config: ControllerConfig) -> Policy:
    """The fallback planner (the fixed-headroom planner by default); an SLA planner adjusts every interval
    unless configured otherwise."""
    settings = dict(config.fallback.planner_settings)
    if config.fallback.planner == "sla_planner":
        settings.setdefault("adjustment_interval_s", config.interval_s)
    return make_baseline(config.fallback.planner, **settings)


def describe(policy: Policy | None) -> dict[str, Any]:
    """The policy's identity for logs: its name and, for a bundle, its path and hash."""
    if policy is None:
        return {"policy": None}
    details = getattr(policy, "describe", None)
    return {"policy": policy.name, **(details() if callable(details) else {})}
