"""Bad settings are rejected at construction, with a message naming the key, the bad value and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from disaggpilot.env.errors import ConfigError, TraceError
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.sim.config import ClusterConfig, PoolConfig
from disaggpilot.env.structured import build
from disaggpilot.env.workload import TenantSpec, TraceSpec
from tests.env.sim.conftest import small_scenario


@pytest.mark.parametrize(("cluster", "message"), [
    pytest.param({"decode": PoolConfig(replicas=40)},
                 r"cluster\.decode\.replicas=40 is invalid: use min_replicas\.\.max_replicas = 1\.\.32",
                 id="above-max"),
    pytest.param({"prefill": PoolConfig(replicas=1, min_replicas=2)},
                 r"cluster\.prefill\.replicas=1 is invalid: use min_replicas\.\.max_replicas = 2\.\.32",
                 id="below-min"),
    pytest.param({"decode": PoolConfig(min_replicas=5, max_replicas=3)},
                 r"cluster\.decode\.min_replicas=5 is invalid: use 0\.\.max_replicas=3", id="min-above-max"),
    pytest.param({"decode": PoolConfig(tp=0)}, r"cluster\.decode\.tp=0 is invalid: use >= 1 GPU", id="tp"),
    pytest.param({"prefill": PoolConfig(max_num_seqs=0)}, r"cluster\.prefill\.max_num_seqs=0 is invalid: use >= 1",
                 id="max_num_seqs"),
    pytest.param({"decode": PoolConfig(max_num_batched_tokens=8)},
                 r"cluster\.decode\.max_num_batched_tokens=8 is invalid: use a budget >= 16", id="token-budget"),
    pytest.param({"gpu_budget": 16}, r"cluster\.gpu_budget=16 is invalid: the initial replicas need 32 GPUs",
                 id="gpu_budget"),
    pytest.param({"routing": "random"}, r"cluster\.routing='random' is invalid: use one of \('least_tokens'",
                 id="routing"),
    pytest.param({"scheduling": "lifo"}, r"cluster\.scheduling='lifo' is invalid: use one of \('fcfs', 'priority'\)",
                 id="scheduling"),
    pytest.param({"cold_start_s": -1.0}, r"cluster\.cold_start_s=-1\.0 is invalid: use >= 0 seconds",
                 id="cold_start_s"),
    pytest.param({"kv_link_gbps": 0.0}, r"cluster\.kv_link_gbps=0\.0 is invalid: use a positive bandwidth",
                 id="kv_link_gbps"),
    pytest.param({"admission_timeout_s": 0.0}, r"cluster\.admission_timeout_s=0\.0 is invalid: use > 0",
                 id="admission_timeout_s"),
    pytest.param({"decode": PoolConfig(enabled=False)},
                 r"cluster='no pool' is invalid: enable prefill and decode pools, or the aggregated pool",
                 id="prefill-without-decode"),
    pytest.param({"decode": PoolConfig(enabled=False), "aggregated": PoolConfig(replicas=1)},
                 r"cluster\.prefill\.enabled=True is invalid: prefill and decode pools are enabled together",
                 id="prefill-without-decode-beside-aggregated"),
])
def test_bad_cluster_settings_are_rejected_naming_key_value_and_fix(cluster: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClusterConfig(**cluster)


def test_pool_settings_are_checked_only_for_enabled_pools() -> None:
    cluster = ClusterConfig(aggregated=PoolConfig(enabled=False, replicas=0, min_replicas=0, tp=0))
    assert cluster.enabled_roles() == ("prefill", "decode")
    assert cluster.initial_gpus() == 32


def test_mappings_are_built_by_omegaconf_and_validated_like_dataclasses() -> None:
    cluster = build(ClusterConfig, {"decode": {"replicas": 2, "tp": 8}})
    assert isinstance(cluster.decode, PoolConfig) and cluster.decode.tp == 8
    with pytest.raises(ConfigError, match=r"cluster\.decode\.tp=0"):
        build(ClusterConfig, {"decode": {"tp": 0}})


@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"tenants": [TenantSpec(name="a"), TenantSpec(name="a")]},
                 r"tenants\[1\]\.name='a' is invalid: tenant names must be unique", id="duplicates"),
    pytest.param({"tenants": []}, r"tenants=\[\] is invalid: configure a list of at least one tenant", id="no-tenant"),
    pytest.param({"duration_s": 0.0}, r"scenario\.duration_s=0\.0 is invalid: use a positive duration",
                 id="zero-duration"),
    pytest.param({"duration_s": -60.0}, r"scenario\.duration_s=-60\.0 is invalid", id="negative-duration"),
    pytest.param({"cluster": {"routing": "nope"}}, r"cluster\.routing='nope' is invalid", id="nested-cluster"),
])
def test_bad_scenarios_are_rejected_naming_key_value_and_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(ScenarioConfig, changes)


def test_bad_tenant_fields_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"ttft_slo_s=-1\.0 is invalid: use a finite objective > 0"):
        ScenarioConfig(tenants=[{"name": "a", "ttft_slo_s": -1.0}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"arrival\.rate_rps=-2\.0 is invalid"):
        ScenarioConfig(tenants=[{"name": "a", "arrival": {"rate_rps": -2.0}}])  # type: ignore[list-item]


def test_a_model_that_does_not_fit_is_rejected_naming_tp() -> None:
    scenario = small_scenario()
    scenario.cluster.decode.tp = 1  # 141 GB of Llama-3.1-70B weights on one 80 GB H100
    with pytest.raises(ConfigError, match=r"llama-3\.1-70b .*does not fit on tp=1 x h100-sxm.*raise tp"):
        SimBackend(scenario)


def test_a_tensor_parallel_degree_beyond_a_node_is_rejected() -> None:
    scenario = small_scenario()
    scenario.cluster.prefill.tp = 16
    with pytest.raises(ConfigError, match=r"tp=16 is invalid: use 1\.\.8"):
        SimBackend(scenario)


def test_a_missing_trace_raises_trace_error_naming_the_file(tmp_path) -> None:
    missing = tmp_path / "no_such_trace.csv"
    scenario = small_scenario()
    scenario.tenants[0] = TenantSpec(name="chat", trace=TraceSpec(path=str(missing)))
    backend = SimBackend(scenario)
    with pytest.raises(TraceError, match=r"no_such_trace\.csv"):
        backend.reset(0)


def test_a_malformed_trace_raises_trace_error(tmp_path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("timestamp_s,tenant,input_tokens,output_tokens\n0.5,chat,many,10\n")
    scenario = ScenarioConfig(tenants=[TenantSpec(name="chat", trace=TraceSpec(path=str(trace)))],
                              duration_s=60.0)
    with pytest.raises(TraceError, match=r"bad\.csv line 2, column input_tokens: 'many'"):
        SimBackend(scenario).reset(0)
