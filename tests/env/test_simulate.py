"""``disaggpilot simulate``: config composition against the schema, and the entry point end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.config_store import SCENARIO_SCHEMA, register_configs
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.simulate import scenario_from_config
from disaggpilot.env.workload import TenantSpec, TraceSpec

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(path.stem for path in (configs_dir() / "scenario").glob("*.yaml"))


def compose_simulate(*overrides: str) -> DictConfig:
    """``configs/simulate.yaml`` composed with ``overrides``, as ``disaggpilot simulate`` would see it."""
    register_configs()
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name="test_simulate"):
        return compose(config_name="simulate", overrides=list(overrides))


# ----- composition -------------------------------------------------------------------------------------
def test_overrides_compose_into_a_typed_scenario() -> None:
    cfg = compose_simulate("scenario.cluster.decode.replicas=5", "scenario.cluster.routing=round_robin",
                           "scenario.tenants.1.arrival.rate_rps=2", "seed=3", "duration_s=600")
    assert OmegaConf.get_type(cfg.scenario) is ScenarioConfig
    assert cfg.seed == 3 and cfg.duration_s == 600 and cfg.interval_s == 30.0
    assert cfg.scenario.cluster.decode.replicas == 5
    assert cfg.scenario.tenants[1].arrival.rate_rps == 2.0  # converted to the schema's float
    scenario = scenario_from_config(cfg.scenario)
    assert isinstance(scenario, ScenarioConfig) and scenario.name == "steady"
    assert scenario.cluster.decode.replicas == 5 and scenario.cluster.prefill.replicas == 3
    assert scenario.cluster.routing == "round_robin"
    assert [t.name for t in scenario.tenants] == ["code", "conv"]
    assert all(isinstance(t, TenantSpec) and t.trace is None for t in scenario.tenants)
    assert scenario.tenants[0].lengths.kind == "empirical" and scenario.tenants[1].arrival.rate_rps == 2.0
    assert scenario.cluster.kv_link_gbps is None and scenario.cluster.usd_per_gpu_hour is None  # schema defaults


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_uses_the_schema_and_validates(name: str) -> None:
    cfg = compose_simulate(f"scenario={name}")
    assert OmegaConf.get_type(cfg.scenario) is ScenarioConfig, f"configs/scenario/{name}.yaml: add " \
        f"`defaults: [{SCENARIO_SCHEMA}, _self_]` at its top"
    assert scenario_from_config(cfg.scenario).duration_s > 0


@pytest.mark.parametrize(("override", "key"), [
    ("scenario.cluster.decode.replicas=abc", "scenario.cluster.decode.replicas"),
    ("scenario.tenants.1.arrival.rate_rps=fast", "scenario.tenants[1].arrival.rate_rps"),
    ("scenario.cluster.gpu_budgett=3", "scenario.cluster.gpu_budgett"),
])
def test_the_schema_rejects_bad_types_and_unknown_keys(override: str, key: str) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_simulate(override)
    assert f"full_key: {key}" in str(error.value.__cause__)


def test_the_schema_checks_the_scenario_yaml_itself(tmp_path: Path) -> None:
    (tmp_path / "scenario").mkdir()
    (tmp_path / "scenario" / "typo.yaml").write_text(
        f"defaults:\n  - {SCENARIO_SCHEMA}\n  - _self_\nname: typo\ncluster:\n  gpu_budgt: 8\n")
    with pytest.raises(ConfigCompositionException) as error:
        compose_simulate("scenario=typo", f"hydra.searchpath=[file://{tmp_path}]")
    assert "gpu_budgt" in str(error.value) + str(error.value.__cause__)


@pytest.mark.parametrize(("override", "message"), [
    ("scenario.cluster.routing=nope", r"cluster\.routing='nope' is invalid: use one of"),
    ("scenario.cluster.decode.replicas=40", r"cluster\.decode\.replicas=40 is invalid: use min_replicas"),
    ("scenario.duration_s=0", r"scenario\.duration_s=0\.0 is invalid"),
])
def test_ranges_are_checked_when_the_scenario_is_built(override: str, message: str) -> None:
    cfg = compose_simulate(override)  # well-typed, so composition succeeds; our validation catches the range
    with pytest.raises(ConfigError, match=message):
        scenario_from_config(cfg.scenario)


def test_a_trace_can_be_set_from_the_command_line() -> None:
    cfg = compose_simulate("scenario.tenants.0.trace={path:traces/code.csv,rate_multiplier:2}")
    trace = scenario_from_config(cfg.scenario).tenants[0].trace
    assert isinstance(trace, TraceSpec) and trace.path == "traces/code.csv" and trace.rate_multiplier == 2.0
    with pytest.raises(ConfigError, match=r"trace\.rate_multiplier=0"):
        scenario_from_config(compose_simulate("scenario.tenants.0.trace={path:x.csv,rate_multiplier:0}").scenario)


def test_scenario_from_config_rejects_a_non_mapping() -> None:
    with pytest.raises(ConfigError, match=r"scenario=.*is not a mapping"):
        scenario_from_config(["steady"])


# ----- the entry point, in a subprocess --------------------------------------------------------------------
def simulate(*overrides: str) -> subprocess.CompletedProcess[str]:
    """Run ``disaggpilot simulate`` as a user would (through ``controller.cli``)."""
    command = [sys.executable, "-m", "disaggpilot.controller.cli", "simulate", *overrides]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_simulate_prints_the_table_and_writes_its_outputs(tmp_path: Path) -> None:
    result = simulate("duration_s=120", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    for tenant in ("code", "conv", "all"):
        assert tenant in rows, result.stdout
        assert int(rows[tenant][1]) > 0  # requests
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["duration_s"] == 120 and summary["cost_usd"] > 0 and summary["gpu_hours"] > 0
    assert [row["tenant"] for row in summary["tenants"]] == ["code", "conv"]
    for row in summary["tenants"]:
        assert row["requests"] > 0 and row["finished"] > 0
        assert 0.0 <= row["attainment"] <= 1.0 and row["cost_usd"] > 0
    timeline = [json.loads(line) for line in (tmp_path / "timeline.jsonl").read_text().splitlines()]
    assert [row["end_s"] for row in timeline] == [30.0, 60.0, 90.0, 120.0]
    assert all(row["cost_usd"] > 0 and row["pool/decode/replicas_ready"] == 3 for row in timeline)
    attainments = [row[f"slo/{t}/attainment"] for row in timeline for t in ("code", "conv")]
    assert all(math.isnan(a) or 0.0 <= a <= 1.0 for a in attainments)


def test_a_badly_typed_override_fails_naming_the_key(tmp_path: Path) -> None:
    result = simulate("scenario.cluster.decode.replicas=abc", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "scenario.cluster.decode.replicas" in result.stdout + result.stderr


def test_an_out_of_range_override_fails_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = simulate("scenario.cluster.routing=nope", f"hydra.run.dir={tmp_path}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "disaggpilot simulate: cluster.routing='nope' is invalid: use one of" in output
    assert "Traceback" not in output
