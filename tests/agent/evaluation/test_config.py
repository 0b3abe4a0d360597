"""``configs/evaluate.yaml`` and ``configs/policy/``: composition, the plan built from it, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.evaluation import EvaluationPlan, build_policy, evaluate, known_kinds, plan_from_config
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.policy import Policy
from disaggpilot.agent.seeds import EVALUATION_SEEDS
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.workload import TraceSpec

POLICY_CONFIGS = sorted(path.stem for path in (configs_dir() / "policy").glob("*.yaml"))


def compose_evaluate(*overrides: str) -> DictConfig:
    """``configs/evaluate.yaml`` composed with ``overrides``, as ``disaggpilot evaluate`` would see it."""
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name="test_evaluate"):
        return compose(config_name="evaluate", overrides=list(overrides))


def test_the_default_config_composes_every_group() -> None:
    cfg = compose_evaluate()
    assert list(cfg.policies) == ["static", "static_tuned", "static_oracle", "threshold", "sla_planner",
                                 "dynamo_planner", "saturation", "headroom_planner", "dynamic_oracle"]
    assert all(cfg.policies[name].kind == name for name in cfg.policies)
    assert cfg.policies.dynamic_oracle.sees_future is True and cfg.policies.static_oracle.sees_future is True
    assert list(cfg.scenarios) == ["steady", "diurnal", "flash_crowd", "long_context", "noisy_neighbor"]
    assert tuple(cfg.seeds) == EVALUATION_SEEDS and cfg.jobs == 2 and cfg.duration_s is None and cfg.trace.path is None
    assert cfg.env.interval_s == 30.0 and cfg.reward.slo_penalty == 10.0


def test_overrides_build_a_plan(scenario_file: Path) -> None:
    cfg = compose_evaluate(f"scenarios=[{scenario_file}]", "seeds=[4]", "duration_s=120", "only=[threshold,static]",
                           "policies.static.decode_replicas=3", "jobs=1", "env.interval_s=60")
    plan = plan_from_config(cfg)
    assert isinstance(plan, EvaluationPlan)
    assert [spec.name for spec in plan.specs] == ["threshold", "static"]
    assert plan.specs[1].params["decode_replicas"] == 3 and "kind" not in plan.specs[1].params
    assert [s.name for s in plan.scenarios] == ["small"] and plan.scenarios[0].duration_s == 120.0
    assert plan.seeds == [4] and plan.env.interval_s == 60.0 and plan.jobs == 1
    assert [(t.policy.name, t.seed) for t in plan.tasks()] == [("threshold", 4), ("static", 4)]


def test_a_policy_is_added_from_the_command_line(scenario_file: Path) -> None:
    cfg = compose_evaluate(f"scenarios=[{scenario_file}]", "+policy@policies.static_big=static",
                           "policies.static_big.decode_replicas=4", "only=[static,static_big]")
    plan = plan_from_config(cfg)
    assert [(s.name, s.kind, s.params["decode_replicas"]) for s in plan.specs] == [
        ("static", "static", None), ("static_big", "static", 4)]


@pytest.mark.parametrize("name", POLICY_CONFIGS)
def test_every_policy_config_names_a_known_kind(name: str) -> None:
    cfg = compose_evaluate(f"+policy@policies.probe={name}")
    assert cfg.policies.probe.kind in known_kinds()
    if name != "ppo":  # a bundle is needed to build that one
        assert isinstance(build_policy(name, cfg.policies.probe), Policy)


def test_an_unknown_policy_kind_is_named() -> None:
    with pytest.raises(PolicyConfigError, match=r"policies\.mine\.kind='magic' is unknown: use one of \[.*'static'"):
        build_policy("mine", {"kind": "magic"})
    with pytest.raises(PolicyConfigError, match=r"policies\.mine\.kind=None is invalid"):
        build_policy("mine", {"decode_replicas": 2})


def test_a_bad_policy_setting_is_named() -> None:
    with pytest.raises(PolicyConfigError, match=r"policies\.mine \(kind 'static'\): .*unknown setting.*replicaz"):
        build_policy("mine", {"kind": "static", "replicaz": 2})
    with pytest.raises(PolicyConfigError, match=r"policies\.mine\.sees_future='yes'"):
        PolicySpec.from_config("mine", {"kind": "static", "sees_future": "yes"})


def test_the_ppo_kind_needs_a_bundle() -> None:
    with pytest.raises(PolicyConfigError, match=r"policies\.ppo.*bundle"):
        build_policy("ppo", {"kind": "ppo"})
    with pytest.raises(PolicyConfigError, match=r"policies\.ppo\.bundle is required"):
        build_policy("ppo", compose_evaluate("+policy@policies.ppo=ppo").policies.ppo)


def test_an_unknown_scenario_or_policy_name_is_named(scenario_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"scenario='no_such_scenario': no file .*; available: \[.*'steady'"):
        plan_from_config(compose_evaluate("scenarios=[no_such_scenario]", "only=[static]"))
    with pytest.raises(ConfigError, match=r"not configured: \['nope'\]"):
        plan_from_config(compose_evaluate(f"scenarios=[{scenario_file}]", "only=[static,nope]"))


def test_a_trace_replaces_the_first_or_a_named_tenant(scenario_file: Path, tmp_path: Path) -> None:
    trace = tmp_path / "burst.csv"
    trace.write_text("timestamp_s,tenant,input_tokens,output_tokens\n"
                     + "".join(f"{0.5 * i},x,500,50\n" for i in range(200)))
    base = [f"scenarios=[{scenario_file}]", "only=[static]", f"trace.path={trace}", "trace.tenant_column_value=x"]
    first = plan_from_config(compose_evaluate(*base)).scenarios[0]
    assert first.name == "small+burst" and first.tenants[1].trace is None
    assert isinstance(first.tenants[0].trace, TraceSpec) and first.tenants[0].trace.path == str(trace)
    replayed = evaluate(plan_from_config(compose_evaluate(*base, "seeds=[0]", "jobs=1")))[0]
    assert [row["arrival_rps/chat"] for row in replayed.timeline[:4]] == [2.0, 2.0, 2.0, 20 / 30]  # 0.5 s apart
    assert all(row["arrival_rps/chat"] == 0 for row in replayed.timeline[4:])
    named = plan_from_config(compose_evaluate(*base, "trace.tenant=summarise", "trace.rate_multiplier=2"))
    trace_spec = named.scenarios[0].tenants[1].trace
    assert named.scenarios[0].tenants[0].trace is None and trace_spec is not None and trace_spec.rate_multiplier == 2
    with pytest.raises(ConfigError, match=r"trace\.tenant='nobody' is not a tenant of scenario 'small'"):
        plan_from_config(compose_evaluate(*base, "trace.tenant=nobody"))
    with pytest.raises(ConfigError, match=r"trace\.format='csv'"):
        plan_from_config(compose_evaluate(*base, "trace.format=csv"))


def test_every_default_policy_runs_an_episode(scenario_file: Path) -> None:
    """The default baselines, as configured, on the tiny scenario: the two oracles search the episode first and
    static_tuned its calibration seeds."""
    plan = plan_from_config(compose_evaluate(f"scenarios=[{scenario_file}]", "seeds=[0]", "jobs=1",
                                             "policies.static_tuned.cache_dir=null",
                                             "policies.dynamic_oracle.cache_dir=null"))
    assert plan.preparing == {"static_oracle", "static_tuned", "dynamic_oracle"}
    results = evaluate(plan)
    assert {r.policy: r.error for r in results} == dict.fromkeys(plan.policies)
    rows = {r.policy: r.row for r in results}
    assert rows["static_oracle"]["prepare_wall_s"] > 0 and rows["static"]["prepare_wall_s"] == 0
    assert all(row["intervals"] == 10 and row["cost_usd"] > 0 for row in rows.values())
