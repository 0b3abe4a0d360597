"""The catalog: shipped model and GPU configs, derived sizes, and the loaders' error messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from disaggpilot.env.catalog import CONFIGS_ENV_VAR, GpuSpec, PerfCalibration, configs_dir, load_gpu, load_model
from disaggpilot.env.errors import CatalogError, ConfigError

MODELS = ("llama-3.1-8b", "llama-3.1-70b", "llama-2-70b", "mixtral-8x7b")
GPUS = ("a100-80gb", "h100-sxm", "h200", "b200", "l40s")


def test_configs_dir_defaults_to_repo_and_honours_env_var(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.delenv(CONFIGS_ENV_VAR, raising=False)
    assert (configs_dir() / "hardware" / "h100-sxm.yaml").is_file()
    monkeypatch.setenv(CONFIGS_ENV_VAR, str(tmp_path))
    assert configs_dir() == tmp_path


@pytest.mark.parametrize(("name", "params", "active"), [
    ("llama-3.1-8b", 8.03e9, None),
    ("llama-3.1-70b", 70.6e9, None),
    ("llama-2-70b", 69.0e9, None),
    ("mixtral-8x7b", 46.7e9, 12.9e9),  # Mistral's model card: 46.7B total, 12.9B active per token
])
def test_parameter_counts_match_model_cards(name: str, params: float, active: float | None) -> None:
    model = load_model(name)
    assert model.params == pytest.approx(params, rel=0.02)
    if active is not None:
        assert model.active_params == pytest.approx(active, rel=0.02)
    else:  # dense: everything but the input embedding multiplies each token
        assert model.active_params == model.params - model.vocab_size * model.hidden_size


@pytest.mark.parametrize(("name", "kv_bytes"), [
    ("llama-3.1-8b", 131072), ("llama-3.1-70b", 327680), ("llama-2-70b", 327680), ("mixtral-8x7b", 131072),
])
def test_kv_bytes_per_token(name: str, kv_bytes: int) -> None:
    model = load_model(name)
    assert model.kv_bytes_per_token("bf16") == kv_bytes
    assert model.kv_bytes_per_token("fp8") == kv_bytes / 2


def test_mixtral_is_moe_and_llama_is_dense() -> None:
    mixtral, llama = load_model("mixtral-8x7b"), load_model("llama-3.1-8b")
    assert (mixtral.num_experts, mixtral.experts_per_token) == (8, 2)
    assert (llama.num_experts, llama.gated_mlp, llama.max_context) == (1, True, 131072)


def test_model_loads_by_yaml_and_json_path() -> None:
    root = configs_dir() / "model"
    by_name = load_model("llama-3.1-70b")
    assert load_model(root / "llama-3.1-70b.yaml") == by_name
    assert load_model(root / "hf" / "llama-3.1-70b" / "config.json").params == by_name.params


def _copy_model(tmp_path: Path, name: str, drop: str) -> Path:
    """A config tree in ``tmp_path`` holding model ``name`` with field ``drop`` removed from config.json."""
    source = configs_dir() / "model"
    (tmp_path / "model" / "hf" / name).mkdir(parents=True)
    shutil.copy(source / f"{name}.yaml", tmp_path / "model" / f"{name}.yaml")
    raw = json.loads((source / "hf" / name / "config.json").read_text())
    del raw[drop]
    hf = tmp_path / "model" / "hf" / name / "config.json"
    hf.write_text(json.dumps(raw))
    return hf


def test_missing_config_json_field_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf = _copy_model(tmp_path, "llama-3.1-8b", drop="num_hidden_layers")
    monkeypatch.setenv(CONFIGS_ENV_VAR, str(tmp_path))
    with pytest.raises(CatalogError, match="num_hidden_layers") as caught:
        load_model("llama-3.1-8b")
    assert str(hf) in str(caught.value) and "Hugging Face" in str(caught.value)


def test_model_yaml_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("name: m\n")
    with pytest.raises(CatalogError, match=r"m\.yaml.*'hf_config' is missing"):
        load_model(bad)
    bad.write_text("name: m\nhf_config: nowhere/config.json\n")
    with pytest.raises(CatalogError, match="names no file"):
        load_model(bad)
    with pytest.raises(CatalogError, match=r"no model named 'gpt-9'.*llama-2-70b"):
        load_model("gpt-9")


@pytest.mark.parametrize("name", GPUS)
def test_shipped_gpus_load_with_valid_figures(name: str) -> None:
    gpu = load_gpu(name)
    assert isinstance(gpu, GpuSpec) and gpu.name == name
    assert gpu.intra_node_gbps > gpu.inter_node_gbps > 0
    assert 0.5 <= gpu.usd_per_gpu_hour <= 10


def test_gpu_figures_follow_datasheets() -> None:
    h100, h200, l40s = load_gpu("h100-sxm"), load_gpu("h200"), load_gpu("l40s")
    assert (h100.peak_bf16_tflops, h100.hbm_bandwidth_tbps, h100.memory_gb) == (989.0, 3.35, 80.0)
    assert h200.peak_bf16_tflops == h100.peak_bf16_tflops and h200.hbm_bandwidth_tbps == 4.8
    assert l40s.intra_node_gbps < 32  # PCIe Gen4 x16, no NVLink
    assert h200.calibration == h100.calibration  # reused: no public H200 measurements to fit


def _gpu_yaml(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load((configs_dir() / "hardware" / "h100-sxm.yaml").read_text())
    for key, value in changes.items():
        target = raw["calibration"] if key in PerfCalibration.__dataclass_fields__ else raw
        if value is None:
            del target[key]
        else:
            target[key] = value
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_efficiency_above_one_is_config_error(tmp_path: Path) -> None:
    path = _gpu_yaml(tmp_path, prefill_compute_efficiency=1.2)
    with pytest.raises(ConfigError, match=r"gpu\.yaml.*prefill_compute_efficiency=1\.2"):
        load_gpu(path)
    with pytest.raises(ConfigError, match="nothing may beat the roofline"):
        PerfCalibration(decode_memory_efficiency=1.2)


@pytest.mark.parametrize(("change", "message"), [
    ({"memory_gb": None}, "'memory_gb' is missing"),
    ({"link_efficiency": None}, "'calibration.link_efficiency' is missing"),
    ({"hbm_bandwith_tbps": 3.0}, "'hbm_bandwith_tbps' is unknown"),
    ({"peak_bf16_tflops": "fast"}, "'peak_bf16_tflops'='fast' is not a number"),
    ({"gpus_per_node": 8.5}, "'gpus_per_node'=8.5 is not a whole number"),
])
def test_gpu_yaml_errors_name_the_field(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_gpu(_gpu_yaml(tmp_path, **change))


def test_unknown_gpu_lists_the_known_ones() -> None:
    with pytest.raises(CatalogError, match=r"no hardware named 'tpu-v5'.*h100-sxm"):
        load_gpu("tpu-v5")
