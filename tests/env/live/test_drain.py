"""A scale-down while requests are provably in flight on the replica removed loses none (issue 21, finding 6).

Emulated replicas run under the real launcher, behind the real gateway reading the launcher's discovery file.
Long streamed answers start on both decode replicas; once the emulator's own ``vllm:num_requests_running``
shows some on the newest one (the one a scale-down drains first) and first tokens have reached the clients,
the decode target drops from 2 to 1 through :meth:`Launcher.set_target`, the path the local actuator takes.
Every answer must arrive whole, with no retry at the gateway (a retry would mean a stream was cut and
resumed elsewhere, which the gateway hides from the client), and the drained process must exit cleanly.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from env.live.gateway import Gateway, GatewayConfig, TenantConfig
from env.live.launcher import Launcher
from env.live.launcher_config import EmulatorSettings, LauncherConfig
from tests.env.live.upstreams import KEYS, Answer, run

START_TIMEOUT_S = 30.0
STREAMS = 6
OUTPUT_TOKENS = 120
"""Output tokens per request: about 3 s of emulated decode at time_scale 1, so a drain falls inside them."""


def running_requests(url: str) -> float:
    """The replica's own ``vllm:num_requests_running``."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "vllm:num_requests_running")


def launcher_config(tmp_path: Path) -> LauncherConfig:
    return LauncherConfig(kind="emulator", served_model_name="tiny", discovery_path=str(tmp_path / "replicas.json"),
                          log_dir=str(tmp_path / "logs"), poll_interval_s=0.1, drain_grace_s=0.5,
                          health_timeout_s=START_TIMEOUT_S, stop_timeout_s=10.0,
                          emulator=EmulatorSettings(max_model_len=512, time_scale=1.0))


def counter(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_scale_down_with_requests_in_flight_on_the_drained_replica_loses_none(tmp_path: Path) -> None:
    with Launcher(launcher_config(tmp_path)) as launcher:
        launcher.set_target("prefill", 1)
        launcher.set_target("decode", 2)
        assert launcher.wait_until(lambda: launcher.counts("decode")["ready"] == 2
                                   and launcher.counts("prefill")["ready"] == 1, START_TIMEOUT_S)
        drained = launcher.replicas("decode")[-1]  # the newest goes first on a scale-down

        async def body() -> tuple[list[Answer], float, str]:
            config = GatewayConfig(tenants=[TenantConfig(name="alpha", api_key=KEYS["alpha"])], model="tiny",
                                   max_model_len=512, discovery_file=launcher.config.discovery_path,
                                   discovery_poll_s=0.05, retry_backoff_s=0.0)
            async with Gateway(config) as gateway, aiohttp.ClientSession() as session:
                first_tokens = [asyncio.Event() for _ in range(STREAMS)]
                streams = [asyncio.create_task(_stream(session, gateway.url, seen)) for seen in first_tokens]
                await asyncio.wait_for(asyncio.gather(*(seen.wait() for seen in first_tokens)), 20)
                in_flight_at_drain = await asyncio.to_thread(running_requests, drained.url)
                launcher.set_target("decode", 1)
                answers = await asyncio.gather(*streams)
                metrics = await (await session.get(gateway.url + "/metrics")).text()
            return answers, in_flight_at_drain, metrics

        answers, in_flight_at_drain, metrics = run(body(), 90)
        assert in_flight_at_drain > 0, "no request was running on the replica when it was drained"
        assert all(a.status == 200 and a.done for a in answers), [a.status for a in answers]
        assert [len(a.tokens) for a in answers] == [OUTPUT_TOKENS] * STREAMS
        assert [a.usage["completion_tokens"] for a in answers if a.usage] == [OUTPUT_TOKENS] * STREAMS
        assert counter(metrics, "disaggpilot_gateway_upstream_retries_total") == 0.0
        assert counter(metrics, "disaggpilot_gateway_requests_failed_total") == 0.0
        assert launcher.wait_until(lambda: drained.process.poll() is not None, 20)
        assert drained.process.returncode == 0
        assert launcher.wait_until(lambda: drained.name not in _listed(launcher), 5)


def _listed(launcher: Launcher) -> list[str]:
    """Replica names in the launcher's discovery file."""
    return [e["name"] for e in json.loads(Path(launcher.config.discovery_path).read_text())["replicas"]]


async def _stream(session: aiohttp.ClientSession, url: str, first_token: asyncio.Event) -> Answer:
    """One long streamed completion; sets ``first_token`` when its first text chunk arrives."""
    body = {"model": "tiny", "prompt": "a b c d e f g h", "max_tokens": OUTPUT_TOKENS, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    answer = Answer(0, {})
    async with session.post(url + "/v1/completions", json=body,
                            headers={"Authorization": f"Bearer {KEYS['alpha']}"}) as response:
        answer.status = response.status
        async for raw in response.content:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                answer.done = True
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                answer.usage = event.get("usage") or answer.usage
                answer.tokens += [c["text"] for c in event.get("choices") or [] if c.get("text")]
                if answer.tokens:
                    first_token.set()
    return answer
