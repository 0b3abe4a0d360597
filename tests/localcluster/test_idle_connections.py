"""The aiohttp servers (the gateway, the emulated replica) close a connection that stays silent.

Their timeout is aiohttp's keep-alive timer (``IDLE_TIMEOUT_S``, 75 s); the tests shorten it to 0.5 s and check
that a connection which never sends a request, and one that stops half-way through its headers, are both
closed, while the server still answers.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

import disaggpilot.localcluster.emulator.server as emulator_server
import disaggpilot.localcluster.gateway.server as gateway_server
from disaggpilot.localcluster.emulator.config import EmulatorConfig
from disaggpilot.localcluster.emulator.server import ReplicaServer
from disaggpilot.localcluster.gateway import Gateway
from disaggpilot.localcluster.gateway.config import ReplicaEndpoint
from tests.localcluster.upstreams import gateway_config, run

IDLE_S = 0.5


async def closed_by_the_server(url: str, greeting: bytes) -> bool:
    """Connect to ``url``'s host, send ``greeting`` (maybe nothing), go silent: True when the server hangs up."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(greeting)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1), timeout=20.0) == b""
    finally:
        writer.close()


async def still_answers(url: str, path: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + path) as response:
        return response.status


@pytest.mark.parametrize("greeting", [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"], ids=["silent", "half-sent"])
def test_the_gateway_closes_a_silent_connection(monkeypatch: pytest.MonkeyPatch, greeting: bytes) -> None:
    monkeypatch.setattr(gateway_server, "IDLE_TIMEOUT_S", IDLE_S)

    async def body() -> None:
        unused = ReplicaEndpoint(name="agg", url="http://127.0.0.1:9")  # never called: no request gets that far
        async with Gateway(gateway_config([], replicas=[unused])) as gateway:
            assert await closed_by_the_server(gateway.url, greeting)
            assert await still_answers(gateway.url, "/metrics") == 200
    run(body())


@pytest.mark.parametrize("greeting", [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"], ids=["silent", "half-sent"])
def test_the_emulated_replica_closes_a_silent_connection(monkeypatch: pytest.MonkeyPatch, greeting: bytes) -> None:
    monkeypatch.setattr(emulator_server, "IDLE_TIMEOUT_S", IDLE_S)

    async def body() -> None:
        server = ReplicaServer(EmulatorConfig(port=0, served_model_name="tiny", max_model_len=512, time_scale=0.01))
        await server.start()
        try:
            assert await closed_by_the_server(server.url, greeting)
            assert await still_answers(server.url, "/metrics") == 200
        finally:
            await server.close()
    run(body())
