"""Tiny untrained policy bundles for tests of the agent and the controller (fixtures in ``tests/conftest.py``)."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from disaggpilot.agent.bundle import MANIFEST_FILE, MODEL_FILE, save_bundle
from disaggpilot.agent.headroom import HeadroomEnv, HeadroomSettings
from disaggpilot.agent.training.prior import apply_prior
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.observation import ObservationConfig
from tests.env.sim.conftest import small_scenario

COLD_START_OBSERVATION = ObservationConfig(cold_start_feature=True, reference_cold_start_s=120.0)
"""Observation settings with the opt-in ``cluster/cold_start`` feature, which the default config lacks."""
PRIOR_PROBABILITY = 0.9
"""Probability the biased untrained policy puts on its prior action (per dimension): the logit gap (~4) dwarfs
what an untrained net_arch [8] network adds to it, so its greedy action is the prior one in every state."""


def build_bundle(directory: Path, headroom: bool = False, observation: ObservationConfig | None = None,
                 levels: HeadroomSettings | None = None, prior_action: list[int] | None = None) -> Path:
    """A tiny untrained MaskablePPO bundle (net_arch [8]) for the small two-pool scenario, 30 s interval, in the
    ``delta`` action mode or (``headroom``, or ``levels`` given) the utilisation-level mode with ``levels``
    (default: the defaults); with ``observation``, trained on those observation settings and recording them in
    its config.yaml as training does. With ``prior_action``, the action head is biased as ``agent.prior_action``
    does (probability 0.9), so the greedy untrained policy picks those level indices: a fixed-headroom planner
    in a bundle, which acts sensibly without training."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    settings = EnvConfig(observation=observation or ObservationConfig())
    cluster = DisaggClusterEnv(small_scenario(duration_s=300.0), config=settings)
    environment: DisaggClusterEnv | HeadroomEnv = cluster
    if headroom or levels is not None:
        environment = HeadroomEnv(cluster, levels or HeadroomSettings())
    model = MaskablePPO("MlpPolicy", DummyVecEnv([lambda: environment]), n_steps=16, batch_size=16, seed=0,
                        device="cpu", policy_kwargs={"net_arch": [8]})
    if prior_action is not None:
        apply_prior(model, prior_action, PRIOR_PROBABILITY)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(str(directory / "model.zip"))
    size = cluster.observer.size
    normalization = {"mean": [0.0] * size, "var": [1.0] * size, "clip_obs": 10.0, "epsilon": 1e-8}
    config_yaml = "seed: 0\n" if observation is None else OmegaConf.to_yaml({"env": {"observation": observation}})
    return save_bundle(directory / "bundle", directory / "model.zip", normalization, environment.spec_dict(),
                       config_yaml).path


class TouchPayload:
    """What an attacker's pickle would carry, made benign: unpickling it creates ``marker`` (an empty file), so
    a test sees whether anything in a bundle was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path, ...]]:
        return Path.touch, (self.marker,)


def plant_payload(bundle: Path, marker: Path) -> None:
    """Tamper with ``bundle`` as someone able to write it could: add a pickled :class:`TouchPayload` to the
    model's ``data`` (stable-baselines3 unpickles every ``:serialized:`` entry on load), then recompute the
    manifest so every file matches its listed hash again. Only a pinned content hash still tells."""
    model = bundle / MODEL_FILE
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data["payload"] = {":serialized:": base64.b64encode(pickle.dumps(TouchPayload(marker))).decode()}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(model, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    rehash(bundle)


def rehash(bundle: Path) -> None:
    """Recompute ``bundle``'s manifest over the files it lists, as a tamperer would."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    files = {name: hashlib.sha256((bundle / name).read_bytes()).hexdigest() for name in manifest["files"]}
    manifest["files"] = files
    manifest["bundle_sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
