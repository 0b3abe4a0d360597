"""Config files hold presets, not copies of the defaults: the settings dataclasses are the one source of defaults.

Each config group file is mapped to the schema dataclass of each of its top-level keys. A value the file sets is
compared with what it would get without it: the dataclass default, overlaid by the group files its defaults
list builds on (``controller/kubernetes.yaml`` builds on ``controller/default.yaml``). The rules:

* no file restates a value it would get anyway (a restated default drifts: ``gpu_budget`` once said 64 in the
  yaml and 128 in the dataclass);
* a group's ``default.yaml`` never differs from the dataclass either, unless the difference is listed in
  :data:`INTENDED` with its reason: the dataclass is the default. Other files are presets: differing is their
  point.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from disaggpilot.agent import baselines
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.agent.ray_cluster import RayConfig
from disaggpilot.agent.training.config import PpoConfig, RunConfig
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.simulate import SimulateSettings
from disaggpilot.localcluster.loadgen_config import LoadgenConfig

SCHEMAS: dict[str, dict[str, type]] = {
    "env/*.yaml": {"": EnvConfig},
    "reward/*.yaml": {"": RewardConfig},
    "agent/*.yaml": {"": PpoConfig},
    "controller/*.yaml": {"": ControllerConfig},
    "vec_env/*.yaml": {"run": RunConfig, "ray": RayConfig},
    "launcher/ray.yaml": {"ray": RayConfig},
    "train.yaml": {"run": RunConfig, "env": EnvConfig},
    "loadgen.yaml": {"": LoadgenConfig},
    "simulate.yaml": {"": SimulateSettings},
}
"""Config file pattern (under ``configs/``) -> the schema of each top-level key (``""``: the whole file). Left
out: ``evaluate.yaml``, whose keys are the app's own command-line settings (no schema holds them yet), and the
scenario, hardware and model presets, which are data, not settings. Policy files
(``policy/*.yaml``) are mapped by their ``kind`` (:data:`POLICY_SCHEMAS`)."""

POLICY_SCHEMAS: dict[str, Callable[..., Any]] = {**baselines.SETTINGS, "ppo": PpoPolicy}
"""A policy ``kind`` -> what takes its settings: the baseline's settings dataclass, or the policy class itself
when it has none (its keyword arguments' defaults are the defaults)."""

INTENDED: dict[tuple[str, str], str] = {
    ("env/default.yaml", "observation.cold_start_feature"): "new runs observe the cold start; the dataclass keeps "
    "False, the layout of bundles trained before the feature, which load their observation settings over it",
}
"""(file, key) -> why a ``default.yaml`` value differs from its dataclass default."""

CHECKED_GROUPS = ("env", "reward", "agent", "controller", "vec_env", "policy")
"""Groups whose every file must be mapped in :data:`SCHEMAS`, so that a new file is checked too."""


def config_files() -> list[tuple[str, dict[str, type]]]:
    """Every mapped file, relative to ``configs/``, with its schemas."""
    root = configs_dir()
    files = [(str(path.relative_to(root)), schemas) for pattern, schemas in SCHEMAS.items()
             for path in sorted(root.glob(pattern))]
    policies = [(str(path.relative_to(root)), OmegaConf.load(path).get("kind"))
                for path in sorted(root.glob("policy/*.yaml"))]
    return files + [(relative, {"": POLICY_SCHEMAS[kind]}) for relative, kind in policies if kind in POLICY_SCHEMAS]


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of ``node``; an empty mapping or list is a leaf too."""
    if isinstance(node, DictConfig) and len(node) > 0:
        for key in node:
            if key == "defaults" and not prefix:
                continue
            yield from leaves(node._get_node(key), f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def value_of(node: Any) -> Any:
    """The plain value of a leaf node, unresolved (an interpolation stays its text)."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node._value() if hasattr(node, "_value") else node


def schema_default(schema: type, key: str) -> Any:
    """The dataclass default at the dotted ``key``; a null optional dataclass field descends into its type. For a
    class that is no dataclass, the default of its keyword argument ``key``."""
    if not dataclasses.is_dataclass(schema):
        parameter = inspect.signature(schema).parameters.get(key)
        has_default = parameter is not None and parameter.default is not inspect.Parameter.empty
        return parameter.default if has_default else KeyError(key)  # type: ignore[union-attr]
    node: Any = OmegaConf.structured(schema)
    for part in key.split(".") if key else []:
        if isinstance(node, DictConfig) and node._is_none():
            node = OmegaConf.structured(node._metadata.object_type or node._metadata.ref_type)
        if not isinstance(node, DictConfig) or part not in node:
            return KeyError(key)
        node = node._get_node(part)
    return value_of(node)


def base_files(relative: str) -> list[str]:
    """The files of the same group that ``relative``'s defaults list builds on (``- default``)."""
    raw = OmegaConf.load(configs_dir() / relative)
    entries = raw.get("defaults", []) if isinstance(raw, DictConfig) else []
    group = Path(relative).parent
    return [str(group / f"{entry}.yaml") for entry in entries
            if isinstance(entry, str) and entry != "_self_" and "/" not in entry and "@" not in entry]


def inherited(relative: str, key: str) -> Any:
    """What ``key`` of ``relative`` would be without the file: the last base file's value, else KeyError."""
    for base in reversed(base_files(relative)):
        node = OmegaConf.select(OmegaConf.load(configs_dir() / base), key, default=KeyError(key))
        if not isinstance(node, KeyError):
            return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node
        found = inherited(base, key)
        if not isinstance(found, KeyError):
            return found
    return KeyError(key)


def split(key: str, schemas: dict[str, type]) -> tuple[type, str] | None:
    """The schema of the top-level key of ``key`` and the key inside it; None when the key has no schema."""
    if "" in schemas:
        return schemas[""], key
    head, _, rest = key.partition(".")
    return (schemas[head], rest) if head in schemas else None


def findings(relative: str, schemas: dict[str, type]) -> tuple[list[str], list[str]]:
    """(restated, contradicting) keys of one file, each as ``file: key=value``."""
    restated, contradicting = [], []
    for key, node in leaves(OmegaConf.load(configs_dir() / relative)):
        value, where = value_of(node), split(key, schemas)
        if where is None or value == "???" or (isinstance(value, str) and "${" in value):
            continue  # no schema, a required value, or an interpolation: nothing to compare
        default = schema_default(*where)
        base = inherited(relative, key)
        expected = default if isinstance(base, KeyError) else base
        if isinstance(expected, KeyError):
            continue  # an unknown key: Hydra's schema check refuses it when composing
        if value == expected:
            restated.append(f"{relative}: {key}={value!r}")
        elif Path(relative).name == "default.yaml" and (relative, key) not in INTENDED:
            contradicting.append(f"{relative}: {key}={value!r} (dataclass: {default!r})")
    return restated, contradicting


@pytest.mark.parametrize(("relative", "schemas"), config_files(), ids=[name for name, _ in config_files()])
def test_config_files_state_only_presets(relative: str, schemas: dict[str, type]) -> None:
    restated, contradicting = findings(relative, schemas)
    assert not restated, f"{len(restated)} value(s) restate the default; remove them:\n" + "\n".join(restated)
    assert not contradicting, ("default.yaml contradicts the dataclass default; change the dataclass, or list the "
                               "difference in INTENDED with its reason:\n" + "\n".join(contradicting))


@pytest.mark.parametrize("group", CHECKED_GROUPS)
def test_every_file_of_a_checked_group_has_a_schema(group: str) -> None:
    mapped = {name for name, _ in config_files()}
    files = {str(path.relative_to(configs_dir())) for path in (configs_dir() / group).glob("*.yaml")}
    assert files and files <= mapped, f"map {sorted(files - mapped)} to their schema in SCHEMAS"


def test_a_restated_default_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reward").mkdir()
    (tmp_path / "reward" / "default.yaml").write_text("slo_penalty: 10.0\nswitching_cost: 0.5\n")
    monkeypatch.setattr(f"{__name__}.configs_dir", lambda: tmp_path)
    restated, contradicting = findings("reward/default.yaml", {"": RewardConfig})
    assert restated == ["reward/default.yaml: slo_penalty=10.0"]
    assert contradicting == ["reward/default.yaml: switching_cost=0.5 (dataclass: 0.01)"]


def test_a_restated_policy_default_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy file is checked against its kind's settings, a file of a new kind fails until it is mapped."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "threshold.yaml").write_text("kind: threshold\ntolerance: 0.1\nscale_down_cooldown_s: 60\n")
    (tmp_path / "policy" / "novel.yaml").write_text("kind: novel\n")
    monkeypatch.setattr(f"{__name__}.configs_dir", lambda: tmp_path)
    files = dict(config_files())
    assert "policy/novel.yaml" not in files  # so test_every_file_of_a_checked_group_has_a_schema names it
    restated, _ = findings("policy/threshold.yaml", files["policy/threshold.yaml"])
    assert restated == ["policy/threshold.yaml: tolerance=0.1"]
