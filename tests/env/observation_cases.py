"""Fixed episodes whose observation vectors must not change when the observation's code does (issue 23, point 4).

``tests/env/data/observation_vectors.npz`` holds every case's vectors as the code computed them when the cases
were written (main at 465f4bc, before observations were computed by feature name; the ``shipped/`` and
``controller/`` vectors again when ``disaggpilot-generalist-v5`` replaced v4 as the shipped bundle, and when v6
replaced v5: its layout appends ``tenant<i>/peak_rate_ratio``, the ``shipped/`` vectors' first 91 columns
unchanged to the bit, the ``controller/`` ones following v6's own decisions; every other vector unchanged to the
bit); the identity tests
(``tests/env/test_observation_identity.py``, ``tests/controller/test_observation_identity.py``) recompute them
and compare bit for bit. Regenerate only when a change is meant to alter observations::

    PYTHONPATH=. .venv/bin/python -m tests.env.observation_cases
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from disaggpilot.agent.analysis import shipped_bundle
from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.policy import environment_for, observing_as
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.observation import ObservationConfig
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen
from tests.bundles import COLD_START_OBSERVATION, build_bundle
from tests.env.sim.conftest import small_scenario

FIXTURE = Path(__file__).parent / "data" / "observation_vectors.npz"
V4_SPEC = Path(__file__).parents[1] / "agent" / "data" / "ppo_v4_spec.json"
V4_OBSERVATION = Path(__file__).parent / "data" / "ppo_v4_observation.json"
INTERVALS = 20
"""Intervals per episode (and decisions per controller run)."""
NEW_RUN = ObservationConfig(cold_start_feature=True, budget_features=True, time_features=True, time_period_s=3600.0)
"""Every opt-in feature on, and the time features' values: the layout a new run lists."""


def bundle_environment(bundle: Path) -> EnvConfig:
    """The environment settings a bundle is evaluated and controlled under (as ``environment_for`` picks them)."""
    return observing_as(load_bundle(bundle).trained_observation(), EnvConfig())


def episode(scenario: ScenarioConfig | str, config: EnvConfig, seed: int) -> np.ndarray:
    """The reset observation and ``INTERVALS`` steps' observations, under seeded random actions."""
    environment = DisaggClusterEnv(scenario, config=config)
    rng = np.random.default_rng(seed)
    observations = [environment.reset(seed=seed)[0]]
    for _ in range(INTERVALS):
        observations.append(environment.step(rng.integers(0, environment.codec.nvec))[0])
    environment.close()
    return np.stack(observations)


def v4_environment() -> EnvConfig:
    """The observation ``disaggpilot-ppo-v4`` (shipped until 2026-12-07) was trained on: its spec's feature list
    (``tests/agent/data/ppo_v4_spec.json``) with its config.yaml's ``env.observation`` settings
    (``tests/env/data/ppo_v4_observation.json``), so the 85-feature layout stays pinned after the bundle left."""
    features = json.loads(V4_SPEC.read_text())["observation_features"]
    settings = json.loads(V4_OBSERVATION.read_text())
    return observing_as(ObservationConfig(**settings, features=features), EnvConfig())


def env_cases(tiny_bundles: dict[str, Path]) -> dict[str, Callable[[], np.ndarray]]:
    """Every environment case by name: v4's and the shipped bundle's settings, the defaults, a new run's, tiny
    bundles."""
    v4 = v4_environment()
    shipped = bundle_environment(shipped_bundle())
    cases: dict[str, Callable[[], np.ndarray]] = {}
    for name, scenario in (("steady", "steady"), ("flash_crowd", "flash_crowd")):
        cases[f"shipped/{name}/0"] = lambda s=scenario: episode(s, shipped, 0)  # type: ignore[misc]
        for seed in (0, 1):
            cases[f"v4/{name}/{seed}"] = lambda s=scenario, k=seed: episode(s, v4, k)  # type: ignore[misc]
            cases[f"default/{name}/{seed}"] = lambda s=scenario, k=seed: episode(s, EnvConfig(), k)  # type: ignore[misc]
        cases[f"new_run/{name}/0"] = lambda s=scenario: episode(s, EnvConfig(observation=NEW_RUN), 0)  # type: ignore[misc]
    for name, bundle in tiny_bundles.items():
        cases[f"tiny/{name}/0"] = lambda b=bundle: episode(small_scenario(), bundle_environment(b), 0)  # type: ignore[misc]
    return cases


def build_tiny_bundles(directory: Path) -> dict[str, Path]:
    """The tiny bundles the tests build (``tests/conftest.py``): default and cold-start observations."""
    return {"delta": build_bundle(directory / "delta"),
            "cold_start": build_bundle(directory / "cold_start", observation=COLD_START_OBSERVATION)}


def scripted_interval(index: int) -> SnapshotSpec:
    """A two-tenant interval whose load rises, spikes and falls, with a silent interval now and then."""
    load = 1.0 + 0.1 * index + (2.0 if 8 <= index < 12 else 0.0)
    if index % 7 == 5:
        return SnapshotSpec(tenants={"chat": TenantSpecimen(), "summarise": TenantSpecimen()})
    chat = TenantSpecimen(arrived=int(120 * load), met=int(100 * load) - index % 3, missed=index % 3,
                          ttft_s=0.3 * load, tpot_s=0.04 * load, in_flight=int(10 * load))
    summarise = TenantSpecimen(arrived=int(30 * load), met=int(25 * load), missed=index % 2, prompt_tokens=3000,
                               ttft_s=1.0 * load, in_flight=3)
    pools = {"prefill": PoolSpecimen(waiting=2.0 * load, running=3.0, kv_usage=0.1 * load),
             "decode": PoolSpecimen(running=40.0 * load, kv_usage=min(0.2 * load, 1.0))}
    return SnapshotSpec(tenants={"chat": chat, "summarise": summarise}, pools=pools)


def controller_run() -> tuple[np.ndarray, np.ndarray]:
    """The shipped bundle in the controller loop over ``scripted_interval``: the observations it was given, and
    each decision's shielded replica targets (prefill, decode)."""
    from disaggpilot.agent.ppo_policy import PpoPolicy
    from disaggpilot.controller.clock import VirtualClock
    from disaggpilot.controller.loop import ControllerLoop
    from disaggpilot.controller.policies import make_fallback
    from disaggpilot.controller.testing import FlakyActuator
    from disaggpilot.env.testing import ScriptedBackend
    from tests.controller.conftest import config

    settings = config(bundle=str(shipped_bundle()))
    policy = PpoPolicy(shipped_bundle())
    seen: list[np.ndarray] = []
    act = policy.act

    def recording(observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        seen.append(observation.copy())
        return act(observation, history)

    policy.act = recording  # type: ignore[method-assign]
    backend = ScriptedBackend(scripted_interval)
    loop = ControllerLoop(settings, small_scenario(), environment_for(policy, EnvConfig(interval_s=30.0)), backend,
                          FlakyActuator(backend=backend), VirtualClock(), policy, make_fallback(settings), seed=0)
    targets = []
    for _ in range(INTERVALS):
        loop.run(1)
        decision = loop.last_decision
        assert decision is not None and decision.source == "policy" and decision.action is not None
        targets.append([decision.action.pools[role].replicas or 0 for role in ("prefill", "decode")])
    return np.stack(seen), np.asarray(targets, dtype=np.int64)


def main() -> None:
    """Write the fixture from the code as it is now."""
    with tempfile.TemporaryDirectory() as directory:
        vectors = {name: run() for name, run in env_cases(build_tiny_bundles(Path(directory))).items()}
    vectors["controller/observations"], vectors["controller/targets"] = controller_run()
    np.savez_compressed(FIXTURE, **vectors)  # type: ignore[arg-type]
    print(f"wrote {FIXTURE}: {', '.join(f'{k} {v.shape}' for k, v in vectors.items())}")


if __name__ == "__main__":
    main()
