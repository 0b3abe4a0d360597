"""The tenant-aware P/D gateway against real loopback replicas (fake ones, and the emulator when present)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.metrics import (
    GW_ARRIVED,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_IN_FLIGHT,
    GW_MET,
    GW_MISSED,
    GW_REJECTED,
    GW_TTFT,
    TENANT_COUNTERS,
    TENANT_HISTOGRAMS,
    TTFT_BUCKETS,
)
from disaggpilot.localcluster.gateway import Gateway, GatewayConfig, TenantConfig
from disaggpilot.localcluster.gateway.config import ReplicaEndpoint
from disaggpilot.localcluster.gateway.routing import ReplicaRegistry
from tests.localcluster.upstreams import (
    KEYS,
    FakeReplica,
    call,
    emulator_available,
    gateway_config,
    prompt_of,
    rig,
    run,
    start_emulators,
)

ROOT = Path(__file__).resolve().parents[2]


def pd_pair(**decode_options: object) -> list[FakeReplica]:
    return [FakeReplica("prefill-0", "prefill"), FakeReplica("decode-0", "decode", **decode_options)]  # type: ignore[arg-type]


# --- authentication and request checks: refused before any replica is touched ------------------------------
def test_missing_or_unknown_key_gets_401_and_touches_no_replica() -> None:
    async def body() -> None:
        replicas = pd_pair()
        async with rig(replicas) as (gateway, session):
            missing = await call(session, gateway.url, None)
            unknown = await call(session, gateway.url, "not-a-key-of-anyone")
            assert (missing.status, unknown.status) == (401, 401)
            assert "missing" in missing.json["error"]["message"]
            assert "not-a-key-of-anyone" not in json.dumps(unknown.json)
            assert all(not replica.received for replica in replicas)
            assert gateway.authenticate(f"Bearer {KEYS['beta']}") == "beta"
    run(body())


def test_malformed_json_and_context_overflow_get_400_naming_the_field() -> None:
    async def body() -> None:
        replicas = pd_pair()
        async with rig(replicas, max_model_len=50) as (gateway, session):
            key = KEYS["alpha"]
            broken = await call(session, gateway.url, key, raw=b'{"prompt": "a b", ')
            too_long = await call(session, gateway.url, key, words=60)
            too_many = await call(session, gateway.url, key, words=40, max_tokens=20)
            bad_chat = await call(session, gateway.url, key, chat=True, extra={"messages": "hi"})
            bad_max = await call(session, gateway.url, key, extra={"max_tokens": 0})
            params = [a.json["error"]["param"] for a in (broken, too_long, too_many, bad_chat, bad_max)]
            assert [a.status for a in (broken, too_long, too_many, bad_chat, bad_max)] == [400] * 5
            assert params == ["body", "prompt", "max_tokens", "messages", "max_tokens"]
            assert all(not replica.received for replica in replicas)
    run(body())


def test_tenant_limits_answer_429_with_retry_after() -> None:
    async def body() -> None:
        tenants = [TenantConfig(name="alpha", api_key=KEYS["alpha"], max_concurrency=1),
                   TenantConfig(name="beta", api_key=KEYS["beta"], token_rate_per_s=10.0, token_burst=20)]
        replicas = [FakeReplica("agg-0", token_delay_s=0.05)]
        async with rig(replicas, tenants=tenants) as (gateway, session):
            url = gateway.url
            first, second = await asyncio.gather(call(session, url, KEYS["alpha"], max_tokens=6),
                                                 _later(call(session, url, KEYS["alpha"])))
            assert (first.status, second.status) == (200, 429)
            assert int(second.headers["Retry-After"]) >= 1
            fits = await call(session, url, KEYS["beta"], words=10, max_tokens=5)
            over = await call(session, url, KEYS["beta"], words=10, max_tokens=5)
            assert (fits.status, over.status) == (200, 429)
            assert int(over.headers["Retry-After"]) >= 1
            assert "token rate" in over.json["error"]["message"]
            assert len(replicas[0].received) == 2
    run(body())


async def _later(coro: object, delay_s: float = 0.05) -> object:
    await asyncio.sleep(delay_s)
    return await coro  # type: ignore[misc]


# --- prefill/decode orchestration and streaming ----------------------------------------------------------
@pytest.mark.parametrize("chat", [False, True])
def test_pd_flow_prefills_one_token_then_decodes_with_prefills_kv_params(chat: bool) -> None:
    async def body() -> None:
        prefill, decode = replicas = pd_pair()
        async with rig(replicas) as (gateway, session):
            answer = await call(session, gateway.url, KEYS["alpha"], words=7, max_tokens=5, chat=chat)
            assert answer.status == 200 and answer.done
            assert answer.tokens == [f"tok{i} " for i in range(5)]
            assert answer.usage == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
            [sent_prefill], [sent_decode] = prefill.received, decode.received
            assert sent_prefill["max_tokens"] == 1 and sent_prefill["stream"] is False
            assert sent_prefill["kv_transfer_params"]["do_remote_decode"] is True
            assert sent_prefill["kv_transfer_params"]["do_remote_prefill"] is False
            assert sent_decode["kv_transfer_params"]["remote_engine_id"] == "prefill-0"
            assert sent_decode["kv_transfer_params"]["remote_port"] == prefill.port
            assert sent_decode["max_tokens"] == 5 and sent_decode["stream"] is True
    run(body())


def test_non_streamed_answer_passes_through_without_kv_params() -> None:
    async def body() -> None:
        async with rig(pd_pair()) as (gateway, session):
            answer = await call(session, gateway.url, KEYS["alpha"], max_tokens=3, stream=False)
            assert answer.status == 200
            assert answer.json["choices"][0]["text"] == "tok0 tok1 tok2 "
            assert answer.json["usage"]["completion_tokens"] == 3
            assert "kv_transfer_params" not in answer.json
    run(body())


def test_least_loaded_routing_sends_new_work_to_the_idle_replica() -> None:
    async def body() -> None:
        slow, other = replicas = [FakeReplica("agg-a", token_delay_s=0.02), FakeReplica("agg-b", token_delay_s=0.0)]
        async with rig(replicas) as (gateway, session):
            url, key = gateway.url, KEYS["alpha"]
            long_one = asyncio.create_task(call(session, url, key, max_tokens=40))
            await asyncio.sleep(0.1)
            short = [await call(session, url, key, max_tokens=2) for _ in range(3)]
            assert (await long_one).status == 200 and all(a.status == 200 for a in short)
            assert (len(slow.received), len(other.received)) == (1, 3)
    run(body())


def test_registry_prefers_least_tokens_and_skips_a_cooling_replica() -> None:
    now = [0.0]
    registry = ReplicaRegistry(lambda: now[0], failure_cooldown_s=5.0)
    registry.update([ReplicaEndpoint(f"d{i}", "decode", f"http://127.0.0.1:{9000 + i}") for i in range(3)] +
                    [ReplicaEndpoint("d9", "decode", "http://127.0.0.1:9009", state="draining")])
    d0, d1, d2 = registry.ready("decode")
    with registry.lease(d0, 100), registry.lease(d1, 10):
        assert registry.pick("decode") is d2
        registry.mark_failed(d2)
        assert registry.pick("decode") is d1
        assert registry.pick("decode", exclude={"d0", "d1"}) is d2  # cooling, but the only one left
        now[0] = 6.0
        assert registry.pick("decode") is d2
    assert registry.mode() is None


# --- failures: draining, dying, lost --------------------------------------------------------------------
def test_draining_replica_refusals_are_retried_elsewhere() -> None:
    async def body() -> None:
        replicas = [FakeReplica("prefill-0", "prefill"), FakeReplica("decode-a", "decode", fail_status=503),
                    FakeReplica("decode-b", "decode")]
        async with rig(replicas) as (gateway, session):
            answers = await asyncio.gather(*(call(session, gateway.url, KEYS["alpha"]) for _ in range(6)))
            assert all(a.status == 200 and len(a.tokens) == 4 and a.done for a in answers)
            assert len(replicas[2].received) == 6
            assert len(replicas[1].received) >= 1  # it was tried, refused, then avoided
    run(body())


@pytest.mark.parametrize("chat", [False, True])
def test_decode_dying_mid_stream_is_resumed_elsewhere_without_loss(chat: bool) -> None:
    async def body() -> None:
        dying = FakeReplica("decode-a", "decode", die_after_tokens=3)
        healthy = FakeReplica("decode-b", "decode", token_delay_s=0.001)
        replicas = [FakeReplica("prefill-0", "prefill"), dying, healthy]
        async with rig(replicas) as (gateway, session):
            answer = await call(session, gateway.url, KEYS["alpha"], words=4, max_tokens=8, chat=chat)
            assert answer.status == 200 and answer.done
            assert answer.tokens == ["tok0 ", "tok1 ", "tok2 "] + [f"tok{i} " for i in range(5)]
            assert len(answer.ids) == 1
            assert answer.usage == {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}
            [resumed] = healthy.received
            assert resumed["max_tokens"] == 5
            if chat:
                assert resumed["messages"][-1] == {"role": "assistant", "content": "tok0 tok1 tok2 "}
                assert resumed["continue_final_message"] is True
            else:
                assert resumed["prompt"] == prompt_of(4) + "tok0 tok1 tok2 "
            text = (await (await session.get(gateway.url + "/metrics")).text())
            assert _sample(text, "disaggpilot_gateway_upstream_retries_total", "alpha") == 1.0
    run(body())


def test_replica_dropping_connection_or_gone_is_retried() -> None:
    async def body() -> None:
        gone = FakeReplica("decode-gone", "decode")
        replicas = [FakeReplica("prefill-0", "prefill", drop_before_answer=1), gone, FakeReplica("decode-b", "decode")]
        async with rig(replicas) as (gateway, session):
            await gone.stop()
            answers = await asyncio.gather(*(call(session, gateway.url, KEYS["beta"]) for _ in range(4)))
            assert [a.status for a in answers] == [200] * 4
            assert all(len(a.tokens) == 4 for a in answers)
    run(body())


def test_request_failing_everywhere_is_lost_counted_and_answered_502() -> None:
    async def body() -> None:
        replicas = [FakeReplica("prefill-0", "prefill"), FakeReplica("decode-a", "decode", fail_status=500)]
        async with rig(replicas, max_attempts=2) as (gateway, session):
            answer = await call(session, gateway.url, KEYS["alpha"])
            assert answer.status == 502 and len(replicas[1].received) == 2
            text = await (await session.get(gateway.url + "/metrics")).text()
            assert _sample(text, "disaggpilot_gateway_requests_failed_total", "alpha") == 1.0
            assert _sample(text, GW_REJECTED, "alpha") == 1.0 and _sample(text, GW_MISSED, "alpha") == 1.0
    run(body())


# --- metrics and logs -----------------------------------------------------------------------------------
def test_metrics_use_contract_names_and_no_key_or_body_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def body() -> str:
        async with rig(pd_pair()) as (gateway, session):
            for _ in range(3):
                assert (await call(session, gateway.url, KEYS["alpha"], words=6, max_tokens=3)).status == 200
            await call(session, gateway.url, KEYS["beta"], words=999)
            await call(session, gateway.url, "wrong-key-123456")
            return await (await session.get(gateway.url + "/metrics")).text()
    text = run(body())
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in (*TENANT_COUNTERS, *TENANT_HISTOGRAMS, GW_IN_FLIGHT):
        assert name.removesuffix("_total") in families, name
    assert _sample(text, GW_ARRIVED, "alpha") == 3.0 and _sample(text, GW_FINISHED, "alpha") == 3.0
    assert _sample(text, GW_MET, "alpha") == 3.0 and _sample(text, GW_GENERATION_TOKENS, "alpha") == 9.0
    assert _sample(text, GW_ARRIVED, "beta") == 0.0  # a 400 is not workload
    edges = sorted({float(s.labels["le"]) for s in families[GW_TTFT].samples if s.name.endswith("_bucket")})
    assert edges[:-1] == list(TTFT_BUCKETS) and edges[-1] == float("inf")
    logged = caplog.text + text
    assert "tenant=alpha" in caplog.text
    for secret in (*KEYS.values(), "wrong-key-123456", "w5", "tok1"):
        assert secret not in logged, secret


def _sample(text: str, name: str, tenant: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("tenant") == tenant:
                return float(sample.value)
    raise AssertionError(f"no {name}{{tenant={tenant}}}")


# --- discovery and configuration -------------------------------------------------------------------------
def test_discovery_file_reload_moves_traffic_off_a_draining_replica(tmp_path: Path) -> None:
    async def body() -> None:
        first, second = FakeReplica("agg-a"), FakeReplica("agg-b")
        for replica in (first, second):
            await replica.start()
        path = tmp_path / "replicas.json"
        _write_discovery(path, [first.endpoint()])
        config = gateway_config([], replicas=[], discovery_file=str(path), discovery_poll_s=0.02)
        try:
            async with Gateway(config) as gateway, aiohttp.ClientSession() as session:
                assert (await call(session, gateway.url, KEYS["alpha"])).status == 200
                _write_discovery(path, [first.endpoint("draining"), second.endpoint()])
                await _until(lambda: gateway.registry.ready("aggregated") == gateway.registry.ready("aggregated")[-1:]
                             and gateway.registry.ready("aggregated")[0].name == "agg-b")
                for _ in range(3):
                    assert (await call(session, gateway.url, KEYS["alpha"])).status == 200
                assert (len(first.received), len(second.received)) == (1, 3)
        finally:
            for replica in (first, second):
                await replica.stop()
    run(body())


def _write_discovery(path: Path, replicas: list[dict[str, str]]) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps({"replicas": replicas}))
    os.replace(staging, path)


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout_s)


def test_config_validation_names_the_field_and_hides_keys() -> None:
    with pytest.raises(ConfigError, match="api_key='<hidden>'"):
        TenantConfig(name="a", api_key="short")
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.max_concurrency=0"):
        GatewayConfig.from_dict({"tenants": [{"name": "a", "api_key": "k" * 10, "max_concurrency": 0}],
                                 "replicas": [{"name": "x", "url": "http://127.0.0.1:1"}]})
    with pytest.raises(ConfigError, match="discovery_file"):
        GatewayConfig(tenants=[TenantConfig(name="a", api_key="k" * 10)])
    assert "k" * 10 not in repr(TenantConfig(name="a", api_key="k" * 10))


def test_module_entry_point_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = {"tenants": [{"name": "alpha", "api_key": KEYS["alpha"]}], "model": "tiny",
              "replicas": [{"name": "agg-0", "role": "aggregated", "url": "http://127.0.0.1:9"}]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "disaggpilot.localcluster.gateway", "--config", str(path)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("gateway listening on http://127.0.0.1:")

        async def models() -> int:
            async with aiohttp.ClientSession() as session, session.get(
                    line.split()[-1] + "/v1/models", headers={"Authorization": f"Bearer {KEYS['alpha']}"}) as r:
                return r.status
        assert run(models(), 10) == 200
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait(timeout=10)


# --- against the real emulator (E1), once it exists -------------------------------------------------------
@pytest.mark.skipif(not emulator_available(), reason="localcluster.emulator is not there yet")
def test_pd_flow_through_the_emulator() -> None:
    with start_emulators(["prefill", "decode"]) as endpoints:
        async def body() -> None:
            config = gateway_config([], replicas=[ReplicaEndpoint(**e) for e, _ in endpoints], model="emu",
                                    max_model_len=4096)
            async with Gateway(config) as gateway, aiohttp.ClientSession() as session:
                answer = await call(session, gateway.url, KEYS["alpha"], words=32, max_tokens=6,
                                    extra={"model": "emu", "ignore_eos": True})
                assert answer.status == 200 and answer.done, answer
                assert len(answer.tokens) == 6 and answer.usage["completion_tokens"] == 6
                assert answer.usage["prompt_tokens"] == 32
        run(body(), 60)


@pytest.mark.skipif(not emulator_available(), reason="localcluster.emulator is not there yet")
def test_emulated_decode_killed_mid_stream_loses_no_token() -> None:
    with start_emulators(["prefill", "decode", "decode"], time_scale=0.5) as started:
        processes = {entry["name"]: process for entry, process in started}

        async def body() -> None:
            config = gateway_config([], replicas=[ReplicaEndpoint(**e) for e, _ in started], model="emu",
                                    max_model_len=4096)
            async with Gateway(config) as gateway, aiohttp.ClientSession() as session:
                stream = asyncio.create_task(call(session, gateway.url, KEYS["alpha"], words=16, max_tokens=60,
                                                  extra={"model": "emu", "ignore_eos": True}))
                await _until(lambda: any(r.in_flight for r in gateway.registry.ready("decode")))
                await asyncio.sleep(0.2)  # some tokens have streamed
                [serving] = [r for r in gateway.registry.ready("decode") if r.in_flight]
                processes[serving.name].kill()
                answer = await stream
                assert answer.status == 200 and answer.done
                assert len(answer.tokens) == 60 and answer.usage["completion_tokens"] == 60
                text = await (await session.get(gateway.url + "/metrics")).text()
                assert _sample(text, "disaggpilot_gateway_upstream_retries_total", "alpha") == 1.0
        run(body(), 60)
