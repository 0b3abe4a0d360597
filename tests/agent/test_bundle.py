"""Policy bundles: hashes, spec checks, and a trained bundle running as a Policy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from disaggpilot.agent.analysis.behaviour import record_episode
from disaggpilot.agent.baselines.static import StaticPolicy
from disaggpilot.agent.bundle import (
    CONFIG_FILE,
    MANIFEST_FILE,
    NORMALIZE_FILE,
    SPEC_FILE,
    content_hash,
    load_bundle,
    save_bundle,
    validate_spec,
)
from disaggpilot.agent.errors import BundleError
from disaggpilot.agent.policy import PolicyContext, environment_for
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.observation import ObservationConfig, feature_names
from tests.bundles import COLD_START_OBSERVATION, plant_payload, rehash
from tests.env.sim.conftest import small_scenario

ROOT = Path(__file__).resolve().parents[2]


def copy_of(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def test_a_saved_bundle_verifies_and_runs_as_a_policy(bundle_dir: Path) -> None:
    policy = PpoPolicy(bundle_dir)
    environment = DisaggClusterEnv(small_scenario(duration_s=300.0))
    observation, _ = environment.reset(seed=0)
    policy.reset(PolicyContext(scenario=environment.world, interval_s=30.0, feature_names=environment.observer.names))
    for _ in range(3):
        action = policy.act(observation, environment.history)
        assert set(action.pools) == {"prefill", "decode"}
        observation, *_ = environment.step_targets(action)
    assert policy.describe()["sha256"] == load_bundle(bundle_dir).content_hash


def test_a_tampered_file_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    copy = copy_of(bundle_dir, tmp_path)
    with (copy / "model.zip").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match=r"model\.zip does not match its hash"):
        load_bundle(copy)


def test_an_unexpected_content_hash_is_refused(bundle_dir: Path) -> None:
    with pytest.raises(BundleError, match="differs from the expected"):
        load_bundle(bundle_dir, expected_hash="0" * 64)


def test_a_spec_mismatch_names_the_key(bundle_dir: Path) -> None:
    other = DisaggClusterEnv(small_scenario(duration_s=300.0),
                             config=EnvConfig(observation=ObservationConfig(max_tenants=2)))
    with pytest.raises(BundleError, match="spec mismatch in 'observation_features'"):
        load_bundle(bundle_dir, expected_spec=other.spec_dict())


def test_a_feature_list_mismatch_names_the_features_only_one_side_has(bundle_dir: Path) -> None:
    spec = load_bundle(bundle_dir).spec
    with_cold_start = {**spec, "observation_features": [*spec["observation_features"], "cluster/cold_start"]}
    with pytest.raises(BundleError, match=r'only the environment has \["cluster/cold_start"\]'):
        validate_spec(spec, with_cold_start)
    reordered = {**spec, "observation_features": spec["observation_features"][::-1]}
    with pytest.raises(BundleError, match="same entries in another order: at position 0"):
        validate_spec(spec, reordered)
    with pytest.raises(BundleError, match=r"the bundle has 30\.0, the environment has 60\.0"):
        validate_spec({"interval_s": 30.0}, {"interval_s": 60.0})


def test_a_policy_refuses_a_cluster_with_other_pools(bundle_dir: Path) -> None:
    policy = PpoPolicy(bundle_dir)
    scenario = small_scenario(prefill=0, decode=0, aggregated=2)
    with pytest.raises(BundleError, match="action_nvec"):
        policy.reset(PolicyContext(scenario=scenario, interval_s=30.0))


def test_missing_or_malformed_bundles_get_clear_errors(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a policy bundle directory"):
        load_bundle(tmp_path)
    copy = copy_of(bundle_dir, tmp_path)
    (copy / SPEC_FILE).unlink()
    with pytest.raises(BundleError, match=r"spec\.json is listed in the manifest but missing"):
        load_bundle(copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["format"] = 99
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a disaggpilot bundle manifest"):
        load_bundle(copy)


def test_normalisation_matches_the_stored_statistics(bundle_dir: Path) -> None:
    policy = PpoPolicy(bundle_dir)
    observation = np.full(policy.bundle.spec["observation_features"].__len__(), 3.0, dtype=np.float32)
    assert np.allclose(policy.normalize(observation), 3.0, atol=1e-3)


def test_a_bundle_says_which_observation_it_was_trained_on(bundle_dir: Path) -> None:
    default_layout = feature_names(ObservationConfig())
    for shipped in sorted((ROOT / "policies").glob("disaggpilot-ppo-v*")):  # trained on the default layout
        trained = load_bundle(shipped).trained_observation()
        assert trained == ObservationConfig(features=default_layout), shipped.name
    # Its config.yaml does not record it: it was observed with the defaults, whatever a config now turns on.
    assert load_bundle(bundle_dir).trained_observation() == ObservationConfig(features=default_layout)


def test_a_bundle_observing_a_feature_this_version_lacks_is_refused_naming_it(bundle_dir: Path,
                                                                              tmp_path: Path) -> None:
    spec = load_bundle(bundle_dir).spec
    spec = {**spec, "observation_features": [*spec["observation_features"], "foo/bar"]}
    bundle = save_bundle(tmp_path / "bundle", bundle_dir / "model.zip", None, spec, "seed: 0\n")
    with pytest.raises(BundleError, match=r"the bundle observes 'foo/bar', which this version does not compute: "
                                          r"use the older disaggpilot that trained it, or retrain"):
        bundle.trained_observation()


@pytest.mark.parametrize(("observation", "message"), [
    ("{max_tennants: 4}", r"env\.observation\.max_tennants is not an observation setting"),
    ("{max_tenants: 0}", r"env\.observation: env\.observation\.max_tenants=0 is invalid"),
    ("3", r"env\.observation must be a mapping"),
])
def test_bad_observation_settings_in_a_bundle_config_are_named(bundle_dir: Path, tmp_path: Path, observation: str,
                                                               message: str) -> None:
    spec = load_bundle(bundle_dir).spec
    bundle = save_bundle(tmp_path / "bundle", bundle_dir / "model.zip", None, spec,
                         f"env:\n  observation: {observation}\n")
    with pytest.raises(BundleError, match=message):
        bundle.trained_observation()


def test_an_evaluation_runs_a_bundle_on_the_observation_it_was_trained_on(cold_start_bundle_dir: Path) -> None:
    policy = PpoPolicy(cold_start_bundle_dir)
    configured = EnvConfig()  # without the bundle's opt-in cold-start feature
    layout = feature_names(COLD_START_OBSERVATION)  # the bundle's spec lists it; the flags do not matter then
    assert environment_for(policy, configured).observation == replace(COLD_START_OBSERVATION, features=layout)
    assert environment_for(StaticPolicy(), configured) is configured
    scenario = small_scenario(duration_s=300.0)
    episode = record_episode(policy, scenario, seed=0, env=configured)
    expected = scenario.cluster.cold_start_s / COLD_START_OBSERVATION.reference_cold_start_s
    assert [step.observation["cluster/cold_start"] for step in episode.steps] == [expected] * len(episode.steps)


def test_a_tampered_bundle_with_a_recomputed_manifest_is_refused_before_anything_is_unpickled(
        bundle_dir: Path, tmp_path: Path) -> None:
    pin = load_bundle(bundle_dir).content_hash
    copy, marker = copy_of(bundle_dir, tmp_path), tmp_path / "payload-ran"
    plant_payload(copy, marker)
    load_bundle(copy)  # every file matches the recomputed manifest: only the pin tells
    with pytest.raises(BundleError, match="differs from the expected"):
        PpoPolicy(copy, expected_hash=pin)
    assert not marker.exists()
    PpoPolicy(copy)  # unpinned, the payload runs: what the test above would have seen
    assert marker.exists()


def test_a_file_not_listed_in_the_manifest_is_refused_before_it_is_read(bundle_dir: Path, tmp_path: Path) -> None:
    pin = load_bundle(bundle_dir).content_hash
    spec = load_bundle(bundle_dir).spec
    bundle = save_bundle(tmp_path / "bare", bundle_dir / "model.zip", None, spec, "seed: 0\n")
    size = len(spec["observation_features"])
    skewed = {"mean": [1e6] * size, "var": [1.0] * size, "clip_obs": 10.0, "epsilon": 1e-8}
    (bundle.path / NORMALIZE_FILE).write_text(json.dumps(skewed))  # changes every input of the policy
    with pytest.raises(BundleError, match=r"normalization\.json is in the bundle but not listed in manifest\.json"):
        load_bundle(bundle.path, expected_hash=pin)
    copy = copy_of(bundle_dir, tmp_path)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    del manifest["files"][CONFIG_FILE]
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    rehash(copy)
    with pytest.raises(BundleError, match=r"config\.yaml is not listed in manifest\.json"):
        load_bundle(copy)
    (copy / CONFIG_FILE).unlink()
    with pytest.raises(BundleError, match=r"config\.yaml is not listed"):
        load_bundle(copy)


def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    copy = copy_of(bundle_dir, tmp_path)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["files"]["../outside.json"] = "0" * 64
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"lists '\.\./outside\.json'"):
        load_bundle(copy)


def test_the_content_hash_to_pin_is_printed_by_the_module(bundle_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "disaggpilot.agent.bundle", str(bundle_dir)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120, check=True)
    assert result.stdout.strip() == content_hash(bundle_dir) == load_bundle(bundle_dir).content_hash


def _rewritten_model(source: Path, target: Path, start_time: int, folder: str, address: str,
                     weights_suffix: bytes = b"") -> Path:
    """``source`` as another run of the same config and seed would write it: another start time, TensorBoard
    folder, function addresses and zip timestamps (and, with ``weights_suffix``, other weights)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for entry in original.infolist():
            content = original.read(entry)
            if entry.filename == "data":
                data = json.loads(content)
                data.update(start_time=start_time, tensorboard_log=folder)
                content = re.sub(r" at 0x[0-9a-f]+>", f" at {address}>", json.dumps(data, indent=4)).encode()
            if entry.filename == "policy.pth":
                content += weights_suffix
            copy.writestr(zipfile.ZipInfo(entry.filename, date_time=(2026, 12, 7, 21, 14, 10)), content)
    return target


def test_two_runs_of_one_config_and_seed_give_one_bundle_hash(bundle_dir: Path, tmp_path: Path) -> None:
    """When and where a run happened never reaches the hash; the weights do. The canonical copy loads and acts
    as the model it came from."""
    spec, model = load_bundle(bundle_dir).spec, bundle_dir.parent / "model.zip"
    hashes = [save_bundle(tmp_path / f"run{i}", _rewritten_model(model, tmp_path / f"model{i}.zip", *run), None,
                          spec, "seed: 0\n").content_hash
              for i, run in enumerate([(1796677577261639314, "/a/tensorboard", "0x7efc9c794b80"),
                                       (1796678043478270703, "/b/tensorboard", "0x7f9312a9c9a0")])]
    assert hashes[0] == hashes[1]
    other = _rewritten_model(model, tmp_path / "other.zip", 0, "/a/tensorboard", "0x7efc9c794b80", b"\0")
    assert save_bundle(tmp_path / "other", other, None, spec, "seed: 0\n").content_hash != hashes[0]
    data = json.loads(zipfile.ZipFile(tmp_path / "run0" / "model.zip").read("data"))
    assert (data["start_time"], data["tensorboard_log"]) == (0, None)
    observation = np.linspace(-1.0, 1.0, len(spec["observation_features"]), dtype=np.float32)
    masks = np.ones(sum(spec["action_nvec"]), dtype=bool)
    assert (PpoPolicy(tmp_path / "run0")._predict(observation, masks).tolist()
            == PpoPolicy(bundle_dir)._predict(observation, masks).tolist())


def test_a_model_file_that_is_not_a_zip_is_refused_naming_it(bundle_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match=r"model\.zip: not a stable-baselines3 model zip"):
        save_bundle(tmp_path / "bundle", tmp_path / "model.zip", None, load_bundle(bundle_dir).spec, "seed: 0\n")
