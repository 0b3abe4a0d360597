"""Policy bundles (docs/architecture.md): one directory holding everything needed to run a trained policy.

Layout::

    model.zip          the stable-baselines3 model (a pickle inside a zip: load only trusted bundles), copied
                       canonically: two runs of one config and seed write the same bytes, so the same hash
    normalization.json observation normalisation statistics: mean, variance, clip, epsilon (plain JSON,
                       no pickle; absent when training did not normalise observations)
    spec.json          the observation/action contract of the environment it was trained on
    config.yaml        the resolved training config
    manifest.json      content hashes (SHA-256) of the files above, and the bundle hash over them

``load_bundle`` verifies every hash before unpickling anything and refuses a bundle whose spec differs
from the environment's, naming the first mismatch. Every file in the directory (the manifest aside) must be
listed in the manifest, and the files a policy reads (model, spec, config; normalisation when present) must
be: a file slipped in beside the listed ones is refused, never read. The manifest only proves the files
agree with each other: someone able to write the bundle can recompute it. Only a pinned content hash
(``expected_hash``, computed on a trusted copy with ``python -m disaggpilot.agent.bundle <dir>``) proves it is the
bundle you meant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from disaggpilot.agent.errors import BundleError
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.observation import ObservationConfig, unknown_features

MODEL_FILE, NORMALIZE_FILE, SPEC_FILE, CONFIG_FILE, MANIFEST_FILE = (
    "model.zip", "normalization.json", "spec.json", "config.yaml", "manifest.json")
BUNDLE_FORMAT = 1
READ_FILES = (MODEL_FILE, SPEC_FILE, CONFIG_FILE)
"""Files every policy load reads; each must be listed in the manifest (normalisation too, when present)."""


@dataclass
class Bundle:
    """A verified bundle on disk.

    Attributes:
        path: the bundle directory.
        spec: the observation/action contract it was trained on.
        manifest: file hashes, bundle hash and metadata.
    """

    path: Path
    spec: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def content_hash(self) -> str:
        """SHA-256 over the bundle's files."""
        return str(self.manifest["bundle_sha256"])

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def normalization(self) -> dict[str, Any] | None:
        """Observation statistics (``mean``, ``var`` lists; ``clip_obs``, ``epsilon``), or None."""
        if NORMALIZE_FILE not in self.manifest["files"]:  # only a hashed file is ever read
            return None
        return _read_json(self.path / NORMALIZE_FILE, "normalization")

    def trained_observation(self) -> ObservationConfig | None:
        """The observation the model was trained with: its spec's feature list (``observation_features``, the
        layout) with the settings ``env.observation`` in its config.yaml records (their defaults when it records
        none: a bundle built by hand, or one older than the settings).

        The scales (``reference_usd_per_hour``...) follow from the settings and the layout from the list, so a policy
        runs on exactly the observation it learned on, whatever the evaluation or controller config says.

        Raises:
            BundleError: the spec lists a feature this version does not compute, or ``env.observation`` is not a
                mapping, has a field this version lacks, or a bad value.
        """
        features = self.spec.get("observation_features")
        unknown = unknown_features(features) if isinstance(features, list) else []
        if unknown:
            raise BundleError(f"{self.path}: the bundle observes {unknown[0]!r}, which this version does not "
                              "compute: use the older disaggpilot that trained it, or retrain")
        values = self._observation_settings()
        if isinstance(features, list):
            values["features"] = features
        try:
            return ObservationConfig(**values)
        except ConfigError as error:
            raise BundleError(f"{self.path / CONFIG_FILE}: env.observation: {error}") from None

    def _observation_settings(self) -> dict[str, Any]:
        """``env.observation`` of config.yaml as keyword arguments (empty when it records none)."""
        where = f"{self.path / CONFIG_FILE}: env.observation"
        config = OmegaConf.to_container(OmegaConf.load(self.path / CONFIG_FILE), resolve=True)
        env = config.get("env") if isinstance(config, dict) else None
        values = env.get("observation") if isinstance(env, dict) else None
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise BundleError(f"{where} must be a mapping of observation settings, not {values!r}")
        known = {item.name for item in dataclasses.fields(ObservationConfig)}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise BundleError(f"{where}.{unknown[0]} is not an observation setting of this version (it has "
                              f"{sorted(known)}); run the bundle with the disaggpilot version that trained it")
        return {str(key): value for key, value in values.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bundle_hash(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


RUN_RECORD_FIELDS: dict[str, Any] = {"start_time": 0, "tensorboard_log": None}
"""Fields of stable-baselines3's ``data`` entry that say when and where a run happened, not what it learned
(the training start in ns, the run's TensorBoard folder), with the value a bundle stores instead."""
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
"""A memory address in the ``repr`` of a function that stable-baselines3 writes beside each pickled class."""
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def copy_model_canonically(source: Path, target: Path) -> None:
    """Copy a stable-baselines3 model zip without what differs between two runs of one config and seed: entry
    timestamps, the run-record fields (:data:`RUN_RECORD_FIELDS`) and memory addresses in descriptive text.
    Nothing is unpickled; the weights and every pickled entry are copied byte for byte."""
    try:
        with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
            for entry in original.infolist():
                content = original.read(entry)
                if entry.filename == "data":
                    content = _canonical_data(content, source)
                copy.writestr(zipfile.ZipInfo(entry.filename, date_time=_ZIP_EPOCH), content,
                              compress_type=entry.compress_type)
    except zipfile.BadZipFile as error:
        raise BundleError(f"{source}: not a stable-baselines3 model zip ({error}); save the model with "
                          "model.save(...)") from error


def _canonical_data(content: bytes, source: Path) -> bytes:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as error:
        raise BundleError(f"{source}: its 'data' entry is not stable-baselines3's JSON ({error})") from error
    data.update({key: value for key, value in RUN_RECORD_FIELDS.items() if key in data})
    return _ADDRESS.sub(">", json.dumps(data, indent=4)).encode()


def save_bundle(directory: str | Path, model_file: Path, normalization: dict[str, Any] | None,
                spec: dict[str, Any], config_yaml: str, metadata: dict[str, Any] | None = None) -> Bundle:
    """Write a bundle from a saved model (and normalisation statistics); returns it verified."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    copy_model_canonically(Path(model_file), path / MODEL_FILE)
    if normalization is not None:
        (path / NORMALIZE_FILE).write_text(json.dumps(normalization))
    (path / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    (path / CONFIG_FILE).write_text(config_yaml)
    names = [MODEL_FILE, SPEC_FILE, CONFIG_FILE] + ([NORMALIZE_FILE] if normalization is not None else [])
    files = {name: _sha256(path / name) for name in sorted(names)}
    manifest = {"format": BUNDLE_FORMAT, "files": files, "bundle_sha256": _bundle_hash(files), **(metadata or {})}
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return load_bundle(path)


def load_bundle(directory: str | Path, expected_spec: dict[str, Any] | None = None,
                expected_hash: str | None = None) -> Bundle:
    """Open and verify a bundle: every file's hash, the bundle hash, and (when given) the spec.

    Raises:
        BundleError: naming the missing file, the file whose hash differs, or the first spec mismatch.
    """
    path = Path(directory)
    manifest = _read_json(path / MANIFEST_FILE, "manifest")
    files = manifest.get("files")
    if manifest.get("format") != BUNDLE_FORMAT or not isinstance(files, dict) or MODEL_FILE not in files:
        raise BundleError(f"{path}: {MANIFEST_FILE} is not a disaggpilot bundle manifest (format {BUNDLE_FORMAT})")
    _check_listing(path, files)
    for name, digest in files.items():
        if not (path / name).is_file():
            raise BundleError(f"{path}: {name} is listed in the manifest but missing")
        if _sha256(path / name) != digest:
            raise BundleError(f"{path}: {name} does not match its hash in {MANIFEST_FILE}: the bundle was altered")
    if _bundle_hash(files) != manifest.get("bundle_sha256"):
        raise BundleError(f"{path}: bundle_sha256 in {MANIFEST_FILE} does not match its files")
    if expected_hash is not None and manifest["bundle_sha256"] != expected_hash:
        raise BundleError(f"{path}: content hash {manifest['bundle_sha256'][:12]}... differs from the expected "
                          f"{expected_hash[:12]}...: refusing to load it")
    bundle = Bundle(path=path, spec=_read_json(path / SPEC_FILE, "spec"), manifest=manifest)
    if expected_spec is not None:
        validate_spec(bundle.spec, expected_spec, path)
    return bundle


def _check_listing(path: Path, files: dict[str, Any]) -> None:
    """Refuse a manifest entry that is not a plain file name, and any file the manifest does not list."""
    for name in files:
        if Path(name).name != name or name in (".", ".."):
            raise BundleError(f"{path}: {MANIFEST_FILE} lists {name!r}: bundle files are plain names in the "
                              "bundle directory; the manifest was altered")
    for name in READ_FILES:
        if name not in files:
            raise BundleError(f"{path}: {name} is not listed in {MANIFEST_FILE}, so its content is not verified; "
                              "re-export the bundle with save_bundle")
    unlisted = sorted(item.name for item in path.iterdir() if item.name != MANIFEST_FILE and item.name not in files)
    if unlisted:
        raise BundleError(f"{path}: {unlisted[0]} is in the bundle but not listed in {MANIFEST_FILE} (unlisted: "
                          f"{unlisted}); a file that is not hashed is never read: remove it, or re-export the "
                          "bundle with save_bundle")


def content_hash(directory: str | Path) -> str:
    """The content hash (``bundle_sha256``) of a verified bundle: the value to pin in ``expected_hash``.

    Run it on a copy you trust (the one you trained or reviewed), not on the deployed one: it verifies the
    files against the manifest, which whoever can write the bundle can recompute. Nothing is unpickled.

    Raises:
        BundleError: the bundle does not verify.
    """
    return load_bundle(directory).content_hash


def validate_spec(found: dict[str, Any], expected: dict[str, Any], where: Path | str = "bundle") -> None:
    """Raise ``BundleError`` naming the first key whose value differs between the two specs."""
    for key in sorted(set(found) | set(expected)):
        if found.get(key) != expected.get(key):
            raise BundleError(f"{where}: spec mismatch in {key!r}: {_difference(found.get(key), expected.get(key))}; "
                              "retrain, or configure the environment as the bundle's config.yaml does")


def _difference(in_bundle: Any, in_environment: Any) -> str:
    """What differs, short enough to read: for two lists, the entries only one side has (or the first
    position where they differ); otherwise both values."""
    if isinstance(in_bundle, list) and isinstance(in_environment, list):
        only_bundle = [x for x in in_bundle if x not in in_environment]
        only_environment = [x for x in in_environment if x not in in_bundle]
        if only_bundle or only_environment:
            return (f"only the bundle has {_brief(only_bundle)}, only the environment has "
                    f"{_brief(only_environment)} ({len(in_bundle)} against {len(in_environment)} entries)")
        position = next((i for i, (a, b) in enumerate(zip(in_bundle, in_environment, strict=False)) if a != b), 0)
        return (f"the same entries in another order: at position {position} the bundle has "
                f"{_brief(in_bundle[position])}, the environment {_brief(in_environment[position])}")
    return f"the bundle has {_brief(in_bundle)}, the environment has {_brief(in_environment)}"


def _brief(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path.parent}: no {path.name}: not a policy bundle directory") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"{path}: the {what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}: the {what} must be a JSON object")
    return value


if __name__ == "__main__":  # python -m disaggpilot.agent.bundle <dir>: print the hash to pin (controller.expected_hash)
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m disaggpilot.agent.bundle <bundle directory>")
    try:
        print(content_hash(sys.argv[1]))
    except BundleError as failure:
        raise SystemExit(f"not a valid bundle: {failure}") from None
