"""Gateway overhead per request: through the gateway vs straight to the replicas, measured in one run.

Three processes on loopback: emulated replicas (``python -m disaggpilot.localcluster.emulator`` at
``--time-scale`` 1e-4, so the replicas cost next to nothing and the gateway's share is as large as it gets), the gateway
(``python -m disaggpilot.localcluster.gateway``) and this client. Each request streams ``--tokens`` tokens for a 64-word
prompt. Two layouts: aggregated (one replica; the gateway adds a hop) and P/D (a prefill and a decode
replica; direct means this client does the prefill-then-decode handshake itself, as the gateway does).
Printed per layout: median and p90 end-to-end latency over ``--requests`` sequential requests, and the
wall time of the same number of requests sent 16 at a time, as gateway/direct ratios.

Usage: ``python benchmarks/gateway_overhead.py [--requests 200] [--tokens 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.localcluster.upstreams import free_port, start_emulators  # noqa: E402

KEY = "benchmark-key-0001"


async def stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    """POST a streamed completion and read it to the end; returns the chunks with choices."""
    chunks = 0
    async with session.post(url + "/v1/completions", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            chunks += line.startswith(b"data: {") and b'"choices":[]' not in line
    return chunks


async def direct_pd(session: aiohttp.ClientSession, prefill: str, decode: str, body: dict[str, Any]) -> int:
    """The P/D handshake done by the client: prefill one token, then decode with its kv_transfer_params."""
    kv = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
          "remote_block_ids": None, "remote_host": None, "remote_port": None}
    first = {**body, "max_tokens": 1, "stream": False, "kv_transfer_params": kv}
    first.pop("stream_options", None)
    async with session.post(prefill + "/v1/completions", json=first) as response:
        answer = await response.json()
    return await stream(session, decode, {**body, "kv_transfer_params": answer["kv_transfer_params"]}, {})


async def measure(send: Any, requests: int) -> tuple[float, float, float]:
    """(median s, p90 s) of sequential requests, and wall s of the same count sent 16 at a time."""
    for _ in range(10):
        await send()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await send()
        latencies.append(time.perf_counter() - started)
    gate = asyncio.Semaphore(16)

    async def limited() -> None:
        async with gate:
            await send()
    started = time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(requests)))
    wall = time.perf_counter() - started
    return statistics.median(latencies), statistics.quantiles(latencies, n=10)[-1], wall


async def compare(layout: str, entries: list[dict[str, str]], gateway: str, args: argparse.Namespace) -> None:
    body = {"model": "emu", "prompt": " ".join(["hello"] * 64), "max_tokens": args.tokens, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    auth = {"Authorization": f"Bearer {KEY}"}
    urls = [entry["url"] for entry in entries]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        if layout == "aggregated":
            direct = await measure(lambda: stream(session, urls[0], body, {}), args.requests)
        else:
            direct = await measure(lambda: direct_pd(session, urls[0], urls[1], body), args.requests)
        via = await measure(lambda: stream(session, gateway, body, auth), args.requests)
    print(f"{layout:<11} direct p50 {direct[0] * 1e3:7.2f} ms p90 {direct[1] * 1e3:7.2f} ms | gateway p50 "
          f"{via[0] * 1e3:7.2f} ms p90 {via[1] * 1e3:7.2f} ms | p50 ratio {via[0] / direct[0]:5.2f} "
          f"(+{(via[0] - direct[0]) * 1e3:.2f} ms) | x16 wall ratio {via[2] / direct[2]:5.2f}")


def run_layout(layout: str, roles: list[str], args: argparse.Namespace) -> None:
    with start_emulators(roles, time_scale=1e-4) as started, tempfile.TemporaryDirectory() as tmp:
        entries = [entry for entry, _ in started]
        config = {"tenants": [{"name": "bench", "api_key": KEY, "max_concurrency": 1000}], "model": "emu",
                  "max_model_len": 4096, "replicas": entries, "port": free_port()}
        path = Path(tmp) / "gateway.json"
        path.write_text(json.dumps(config))
        gateway = subprocess.Popen([sys.executable, "-m", "disaggpilot.localcluster.gateway", "--config", str(path),
                                    "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            line = gateway.stdout.readline() if gateway.stdout else ""
            asyncio.run(compare(layout, entries, line.split()[-1], args))
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    run_layout("aggregated", ["aggregated"], args)
    run_layout("pd", ["prefill", "decode"], args)


if __name__ == "__main__":
    main()
