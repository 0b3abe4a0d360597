"""The load generator: the simulator's request sequence, replayed against a real gateway, summarised."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import GW_ARRIVED
from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.localcluster.gateway import Gateway, TenantConfig
from disaggpilot.localcluster.gateway.config import ReplicaEndpoint
from disaggpilot.localcluster.loadgen import main, plan_requests, replay
from disaggpilot.localcluster.loadgen_config import LoadgenConfig, scenario_workload
from tests.localcluster.test_gateway import _sample
from tests.localcluster.upstreams import (
    KEYS,
    FakeReplica,
    emulator_available,
    gateway_config,
    rig,
    run,
    start_emulators,
)


def tiny_scenario(rate_rps: float = 15.0) -> dict[str, Any]:
    """Two tenants, fixed lengths, a two-second episode."""
    def tenant(name: str) -> dict[str, Any]:
        return {"name": name, "ttft_slo_s": 1.0, "tpot_slo_s": 0.5, "arrival": {"rate_rps": rate_rps},
                "lengths": {"kind": "fixed", "prompt_mean": 8, "output_mean": 4}}
    return {"name": "tiny", "duration_s": 2.0, "tenants": [tenant("alpha"), tenant("beta")]}


def test_plan_is_the_simulators_request_sequence() -> None:
    scenario = load_scenario("flash_crowd")
    simulator = SimBackend(scenario)
    simulator.reset(3)
    tenants, duration = scenario_workload("flash_crowd")
    plan = plan_requests(tenants, duration, LoadgenConfig(url="http://127.0.0.1:1", seed=3, duration_s=60.0))
    count = len(plan)
    assert count > 100 and float(simulator.requests.arrival_s[count]) >= 60.0
    for name in ("arrival_s", "tenant", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(plan, name), getattr(simulator.requests, name)[:count]), name
    assert plan.tenant_names == simulator.requests.tenant_names


def test_replay_through_the_gateway_matches_what_was_sent() -> None:
    async def body() -> None:
        replicas = [FakeReplica("prefill-0", "prefill"), FakeReplica("decode-0", "decode", token_delay_s=0.002)]
        async with rig(replicas) as (gateway, session):
            config = LoadgenConfig(url=gateway.url, api_keys=KEYS, model="tiny", seed=1, progress=False)
            tenants, duration = scenario_workload(tiny_scenario())
            report = await replay(config, tenants, duration)
            metrics = await (await session.get(gateway.url + "/metrics")).text()
        plan = plan_requests(tenants, duration, config)
        assert len(report.results) == len(plan) > 20
        assert report.counts() == {"finished": len(plan), "rejected": 0, "lost": 0}
        for index, name in enumerate(plan.tenant_names):
            sent = int((plan.tenant == index).sum())
            assert sum(r.tenant == name for r in report.results) == sent
            assert _sample(metrics, GW_ARRIVED, name) == sent
            row = next(row for row in report.summary.tenants if row.tenant == name)
            assert (row.requests, row.finished) == (sent, sent)
            assert row.attainment == 1.0 and 0.0 < row.ttft_p50_s < 1.0
        assert all(r.received_tokens == 4 and r.prompt_tokens == 8 for r in report.results)
        assert len(decode_bodies := replicas[1].received) == len(plan)
        assert all(b["ignore_eos"] is True and len(b["prompt"].split()) == 8 for b in decode_bodies)
    run(body(), 30)


@contextmanager
def gateway_in_background(**overrides: Any) -> Iterator[str]:
    """A gateway and fake P/D replicas served by an event loop in a thread; yields the gateway's URL."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with rig([FakeReplica("prefill-0", "prefill"), FakeReplica("decode-0", "decode")], **overrides) as (
                gateway, _):
            ready.set_result(gateway.url)
            await stop.wait()
    thread = threading.Thread(target=lambda: loop.run_until_complete(asyncio.wait_for(serve(), 60)), daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 10), loop).result(15)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)


def test_main_prints_the_simulators_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    tenants = [{"name": "alpha", "api_key": KEYS["alpha"], "max_concurrency": 1}, {"name": "beta",
                                                                                  "api_key": KEYS["beta"]}]
    with gateway_in_background(tenants=[TenantConfig(**t) for t in tenants]) as url:
        cfg = OmegaConf.create({"scenario": tiny_scenario(rate_rps=10.0), "url": url, "model": "tiny",
                                "api_keys": {"alpha": KEYS["alpha"]}, "seed": 0, "progress": False,
                                "output_json": str(tmp_path / "loadgen.json"), "endpoint": "chat"})
        report = main(cfg)
    printed = capsys.readouterr().out
    assert "tenant" in printed and "alpha" in printed and "beta" in printed and "attain" in printed
    counts = report.counts()
    beta = [r for r in report.results if r.tenant == "beta"]
    assert beta and all(r.outcome == "lost" and r.status == 401 for r in beta)  # beta sent no key
    assert counts["lost"] == len(beta) and counts["finished"] + counts["rejected"] == len(report.results) - len(beta)
    saved = json.loads((tmp_path / "loadgen.json").read_text())
    assert len(saved["results"]) == len(report.results) and saved["counts"] == counts


def _tenant(raw: dict[str, Any]) -> Any:
    from disaggpilot.localcluster.gateway import TenantConfig
    return TenantConfig(**raw)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="url"):
        LoadgenConfig(url="localhost:8000")
    with pytest.raises(ConfigError, match="time_scale"):
        LoadgenConfig(url="http://x", time_scale=0)
    with pytest.raises(ConfigError, match=r"scenario=.*no-such"):
        scenario_workload("no-such")
    assert "secret" not in repr(LoadgenConfig(url="http://x", api_keys={"a": "secret"}))


@pytest.mark.skipif(not emulator_available(), reason="localcluster.emulator is not there yet")
def test_replay_through_gateway_and_emulators() -> None:
    with start_emulators(["prefill", "decode"], time_scale=0.01) as endpoints:
        async def body() -> None:
            config = gateway_config([], replicas=[ReplicaEndpoint(**e) for e, _ in endpoints], model="emu",
                                    max_model_len=4096)
            async with Gateway(config) as gateway:
                loadgen = LoadgenConfig(url=gateway.url, api_keys=KEYS, model="emu", time_scale=0.01,
                                        progress=False)
                scenario = tiny_scenario(rate_rps=1.0)
                scenario["duration_s"] = 20.0
                tenants, duration = scenario_workload(scenario)
                report = await replay(loadgen, tenants, duration)
            assert report.counts()["finished"] == len(report.results) > 10
            assert all(r.received_tokens == r.output_tokens for r in report.results)
        run(body(), 60)


def test_loadgen_yaml_composes_into_a_valid_config() -> None:
    from hydra import compose, initialize_config_dir

    from disaggpilot.env.catalog import configs_dir
    from disaggpilot.localcluster.config_store import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        cfg = compose("loadgen", overrides=["url=http://127.0.0.1:9", "scenario=diurnal", "seed=4"])
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    tenants, duration = scenario_workload(raw.pop("scenario"))
    config = LoadgenConfig(**raw)
    assert (config.seed, config.duration_s, [t.name for t in tenants], duration) == (4, 60.0, ["chat", "code"], 7200.0)
