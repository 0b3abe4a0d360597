"""The emulator's HTTP server on loopback: OpenAI API, P/D handshake, errors, and /metrics against vLLM's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from disaggpilot.env.data import data_file
from disaggpilot.localcluster.emulator.config import EmulatorConfig, parse_args, to_args
from disaggpilot.localcluster.emulator.server import ReplicaServer
from tests.localcluster.conftest import signature

RECORDED = {"prefill": "vllm/metrics_pd_prefill_nixl.txt", "decode": "vllm/metrics_pd_decode_nixl.txt",
            "aggregated": "vllm/metrics_aggregated.txt"}
"""Role -> vLLM's recorded scrape of that role, inside the repository's data folder."""
TIMEOUT = aiohttp.ClientTimeout(total=20)
PD_REQUEST = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
              "remote_block_ids": None, "remote_host": None, "remote_port": None}


def config(role: str = "aggregated", **overrides: Any) -> EmulatorConfig:
    """A replica named ``tiny`` with the recorded replicas' 512-token length, at 1/100 of GPU time."""
    settings: dict[str, Any] = {"role": role, "port": 0, "served_model_name": "tiny", "max_model_len": 512,
                                "time_scale": 0.01, **overrides}
    return EmulatorConfig(**settings)


@asynccontextmanager
async def serving(*configs: EmulatorConfig) -> AsyncIterator[tuple[aiohttp.ClientSession, list[ReplicaServer]]]:
    servers = [ReplicaServer(c) for c in configs]
    for server in servers:
        await server.start()
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            yield session, servers
    finally:
        for server in servers:
            await server.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def events(response: aiohttp.ClientResponse) -> list[Any]:
    """The SSE ``data:`` payloads of a streamed answer (JSON decoded; ``[DONE]`` kept as a string)."""
    items: list[Any] = []
    async for raw in response.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            payload = line[len("data: "):]
            items.append(payload if payload == "[DONE]" else json.loads(payload))
    return items


def test_command_line_round_trips_and_names_the_bad_flag() -> None:
    original = config("decode", tensor_parallel=8, kv_cache_tokens=4096, seed=3)
    assert parse_args(to_args(original)) == original
    with pytest.raises(ValueError, match="--time-scale"):
        parse_args(["--time-scale", "0"])


def test_completion_without_streaming_counts_words_as_tokens() -> None:
    async def scenario() -> None:
        async with serving(config()) as (session, servers):
            async with session.post(servers[0].url + "/v1/completions",
                                    json={"model": "tiny", "prompt": "one two three", "max_tokens": 5}) as response:
                body = await response.json()
            assert response.status == 200
            assert body["choices"][0]["text"] == "tok0 tok1 tok2 tok3 tok4"
            assert body["choices"][0]["finish_reason"] == "length"
            assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8,
                                     "prompt_tokens_details": None}
            async with session.post(servers[0].url + "/v1/completions",
                                    json={"prompt": [5, 6, 7, 8], "max_tokens": 2}) as response:
                assert (await response.json())["usage"]["prompt_tokens"] == 4

    run(scenario)


def test_streamed_completion_and_chat_follow_openai_sse() -> None:
    async def scenario() -> None:
        async with serving(config()) as (session, servers):
            url = servers[0].url
            async with session.post(url + "/v1/completions", json={
                    "prompt": "a b", "max_tokens": 4, "stream": True,
                    "stream_options": {"include_usage": True}}) as response:
                assert response.headers["Content-Type"].startswith("text/event-stream")
                items = await events(response)
            assert items[-1] == "[DONE]"
            assert "".join(i["choices"][0]["text"] for i in items[:-2]) == "tok0 tok1 tok2 tok3"
            assert [i["choices"][0]["finish_reason"] for i in items[:-2]] == [None, None, None, "length"]
            assert items[-2]["choices"] == [] and items[-2]["usage"]["completion_tokens"] == 4
            async with session.post(url + "/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": "hello there you"}], "max_tokens": 3,
                    "stream": True}) as response:
                chat = await events(response)
            assert chat[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            assert "".join(i["choices"][0]["delta"]["content"] for i in chat[1:-1]) == "tok0 tok1 tok2"
            assert all("usage" not in i for i in chat[:-1])
            async with session.post(url + "/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi you"}]}],
                    "max_completion_tokens": 2}) as response:
                body = await response.json()
            assert body["object"] == "chat.completion"
            assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1"}
            assert body["usage"]["prompt_tokens"] == 2

    run(scenario)


def test_prefill_then_decode_handshake_like_nixl() -> None:
    async def scenario() -> None:
        async with serving(config("prefill"), config("decode")) as (session, (prefill, decode)):
            request = {"model": "tiny", "prompt": " ".join(["w"] * 40), "max_tokens": 6}
            async with session.post(prefill.url + "/v1/completions",
                                    json={**request, "max_tokens": 1, "kv_transfer_params": PD_REQUEST}) as answer:
                first = await answer.json()
            params = first["kv_transfer_params"]
            assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
            assert params["remote_engine_id"] == prefill.engine_id
            assert params["remote_block_ids"] == [0, 1, 2]  # 40 tokens in 16-token blocks
            assert (params["remote_host"], params["remote_port"]) == ("127.0.0.1", prefill.port)
            assert first["usage"]["completion_tokens"] == 1
            async with session.post(decode.url + "/v1/completions",
                                    json={**request, "stream": True, "kv_transfer_params": params}) as answer:
                items = await events(answer)
            assert "".join(i["choices"][0]["text"] for i in items[:-1]) == "tok0 tok1 tok2 tok3 tok4 tok5"
            async with session.get(decode.url + "/metrics") as scrape:
                text = await scrape.text()
        samples = {s.name + json.dumps(s.labels, sort_keys=True): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert samples['vllm:nixl_xfer_time_seconds_count{"engine": "0", "model_name": "tiny"}'] == 1
        assert samples['vllm:prompt_tokens_by_source_total{"engine": "0", "model_name": "tiny", '
                       '"source": "external_kv_transfer"}'] == 40
        assert samples['vllm:generation_tokens_total{"engine": "0", "model_name": "tiny"}'] == 6

    run(scenario)


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/v1/completions", {"max_tokens": 3}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 600}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "n": 2}, 400, "n"),
    ("/v1/completions", {"prompt": "x", "model": "other"}, 404, "model"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("/v1/completions", {"prompt": "x", "kv_transfer_params": PD_REQUEST}, 400, "kv_transfer_params"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
])
def test_invalid_requests_get_openai_errors_naming_the_field(path: str, body: dict[str, Any], status: int,
                                                            param: str) -> None:
    async def scenario() -> None:
        async with serving(config()) as (session, servers):
            async with session.post(servers[0].url + path, json=body) as response:
                error = (await response.json())["error"]
            assert (response.status, error["param"], error["code"]) == (status, param, status)

    run(scenario)


def test_decode_refuses_a_handshake_missing_a_field_and_bad_json() -> None:
    async def scenario() -> None:
        async with serving(config("decode")) as (session, servers):
            params = {"do_remote_prefill": True, "remote_engine_id": "e", "remote_host": "h", "remote_port": 1}
            async with session.post(servers[0].url + "/v1/completions",
                                    json={"prompt": "x", "kv_transfer_params": params}) as response:
                assert (await response.json())["error"]["param"] == "kv_transfer_params.remote_block_ids"
            async with session.post(servers[0].url + "/v1/completions", data=b"{not json") as response:
                assert response.status == 400

    run(scenario)


@pytest.mark.parametrize("role", ["prefill", "decode", "aggregated"])
def test_metrics_have_exactly_the_recorded_families_labels_and_buckets(role: str) -> None:
    async def scenario() -> None:
        async with serving(config(role)) as (session, servers):
            url = servers[0].url
            async with session.get(url + "/v1/models") as response:
                assert (await response.json())["data"][0]["id"] == "tiny"
            for path, body in (("/v1/completions", {"prompt": "a b c", "max_tokens": 3}),
                               ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                         "max_tokens": 2})):
                async with session.post(url + path, json=body) as response:
                    assert response.status == 200
            async with session.get(url + "/metrics") as response:
                emulated = signature(await response.text())
        recorded = signature(data_file(RECORDED[role]).read_text())
        assert sorted(emulated) == sorted(recorded)
        mismatched = {name: (emulated[name], recorded[name]) for name in recorded
                      if emulated[name] != recorded[name]}
        assert mismatched == {}

    run(scenario)


def test_drain_finishes_the_request_in_flight_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        server = ReplicaServer(config(time_scale=0.5))
        await server.start()
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                async def long_request() -> list[Any]:
                    async with session.post(server.url + "/v1/completions",
                                            json={"prompt": "x", "max_tokens": 40, "stream": True}) as response:
                        return await events(response)

                in_flight = asyncio.create_task(long_request())
                while server.in_flight == 0:
                    await asyncio.sleep(0.01)
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # a keep-alive client
                drained = asyncio.create_task(server.drain(timeout_s=20))
                await asyncio.sleep(0.05)
                body = b'{"prompt": "y"}'
                writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                assert (await reader.readline()).startswith(b"HTTP/1.1 503")
                writer.close()
                with pytest.raises(aiohttp.ClientConnectorError):  # the port is closed to new connections
                    await session.post(server.url + "/v1/completions", json={"prompt": "y"})
                assert not in_flight.done()
                items = await in_flight
                assert await drained is True
            assert len(items) == 41 and items[-1] == "[DONE]"
        finally:
            await server.close()

    run(scenario)
