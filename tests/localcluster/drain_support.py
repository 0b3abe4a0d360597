"""A scale-down while streamed requests are provably in flight on the replica it removes (issue 21, finding 6),
shared by the emulator test (``test_drain.py``) and the real-vLLM one (``test_real_vllm.py``).

Long streamed answers start through the gateway; as soon as the replica's own ``vllm:num_requests_running``
shows some on the replica a scale-down drains first (the newest), the decode target drops by one through
:meth:`Launcher.set_target`, the path the local actuator takes. Every answer must then arrive whole, with no
retry at the gateway (a retry would mean a stream was cut and resumed elsewhere, which the gateway hides from
the client), and the drained process must exit cleanly.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from disaggpilot.env.live.launcher import Launcher, Replica
from tests.localcluster.upstreams import Answer

Value = TypeVar("Value")

RETRIES = "disaggpilot_gateway_upstream_retries_total"
FAILED = "disaggpilot_gateway_requests_failed_total"


@dataclass
class DrainRun:
    """What a drain under load left behind."""

    answers: list[Answer]
    in_flight_at_drain: float
    """``vllm:num_requests_running`` plus ``vllm:num_requests_waiting`` on the drained replica at the moment its
    drain began (a P/D decode request waits there for its KV cache before it runs: in flight all the same)."""
    retries: float
    """Gateway upstream retries during the run."""
    failures: float
    """Requests the gateway failed during the run."""


def counter(text: str, name: str) -> float:
    """The sum of a family's samples in a Prometheus exposition."""
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def requests_on_replica(url: str) -> float:
    """The requests the replica itself holds: its ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return counter(text, "vllm:num_requests_running") + counter(text, "vllm:num_requests_waiting")


def listed(launcher: Launcher) -> list[str]:
    """Replica names in the launcher's discovery file."""
    return [e["name"] for e in json.loads(Path(launcher.config.discovery_path).read_text())["replicas"]]


async def drain_during_streams(launcher: Launcher, gateway_url: str, key: str, model: str, streams: int,
                               output_tokens: int, running_timeout_s: float = 20.0) -> DrainRun:
    """Start ``streams`` long answers through the gateway, drain the newest decode replica as soon as it runs
    some of them, and wait for every answer."""
    drained = launcher.replicas("decode")[-1]
    async with aiohttp.ClientSession() as session:
        assert await _gateway_routes_to(session, gateway_url, drained.name), (
            f"the gateway never listed {drained.name} as ready: {await _gateway_view(session, gateway_url)}")
        before = await (await session.get(gateway_url + "/metrics")).text()
        tasks = [asyncio.create_task(_stream(session, gateway_url, key, model, output_tokens))
                 for _ in range(streams)]
        in_flight = await _requests_on(drained, running_timeout_s)
        launcher.set_target("decode", len(launcher.replicas("decode")) - 1)
        answers = await asyncio.gather(*tasks)
        after = await (await session.get(gateway_url + "/metrics")).text()
    return DrainRun(answers, in_flight, counter(after, RETRIES) - counter(before, RETRIES),
                    counter(after, FAILED) - counter(before, FAILED))


async def _gateway_view(session: aiohttp.ClientSession, gateway_url: str) -> list[dict[str, object]]:
    """The replicas the gateway routes among (its ``/health`` answer)."""
    async with session.get(gateway_url + "/health") as response:
        return list((await response.json())["replicas"])


async def _gateway_routes_to(session: aiohttp.ClientSession, gateway_url: str, name: str,
                             timeout_s: float = 10.0) -> bool:
    """Wait until the gateway lists replica ``name`` as ready. The launcher reports a replica ready when it writes
    the discovery file, and the gateway reads that file on its next poll: streams started in between all go to
    the other replicas, and the drained one never holds any (the likely cause of a CI failure that polled the
    new replica for 120 s and saw nothing on it)."""
    def routed(replicas: list[dict[str, object]]) -> bool:
        return any(r["name"] == name and r["state"] == "ready" and r["listed"] for r in replicas)
    return routed(await _poll(lambda: _gateway_view(session, gateway_url), routed, timeout_s))


async def _requests_on(replica: Replica, timeout_s: float, poll_s: float = 0.05) -> float:
    """The replica's requests as soon as there are any (0 after ``timeout_s``): on a loaded machine the answers it
    serves can finish while the last client still waits for its first token (one CI run read 0)."""
    return await _poll(lambda: asyncio.to_thread(_requests_or_zero, replica.url), lambda held: held > 0,
                       timeout_s, poll_s)


async def _poll(read: Callable[[], Awaitable[Value]], done: Callable[[Value], bool], timeout_s: float,
                poll_s: float = 0.05) -> Value:
    """``read()`` every ``poll_s`` until ``done`` accepts its value or ``timeout_s`` has passed; the last value."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    value = await read()
    while not done(value) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(poll_s)
        value = await read()
    return value


def _requests_or_zero(url: str) -> float:
    """``requests_on_replica``, or 0 when the busy replica's ``/metrics`` does not answer in time: a vLLM replica
    on a loaded CPU can leave one scrape unanswered for over 5 s (one CI run), which says nothing about the drain."""
    try:
        return requests_on_replica(url)
    except (TimeoutError, urllib.error.URLError):
        return 0.0


def assert_none_lost(run: DrainRun, launcher: Launcher, drained: Replica, output_tokens: int) -> None:
    """Every answer whole, no retry or failure at the gateway, the drained replica gone and exited cleanly."""
    assert run.in_flight_at_drain > 0, (
        "no request was on the replica when it was drained; answers (status, done, tokens): "
        f"{[(a.status, a.done, len(a.tokens)) for a in run.answers]}; the end of its log:\n"
        + drained.log_path.read_text(errors="replace")[-3000:])
    assert all(a.status == 200 and a.done for a in run.answers), [a.status for a in run.answers]
    assert [(a.usage or {}).get("completion_tokens") for a in run.answers] == [output_tokens] * len(run.answers)
    assert (run.retries, run.failures) == (0.0, 0.0)
    assert launcher.wait_until(lambda: drained.process.poll() is not None, 60)
    assert drained.process.returncode == 0
    assert launcher.wait_until(lambda: drained.name not in listed(launcher), 5)


async def _stream(session: aiohttp.ClientSession, url: str, key: str, model: str, output_tokens: int) -> Answer:
    """One long streamed completion."""
    body = {"model": model, "prompt": "a b c d e f g h", "max_tokens": output_tokens, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    answer = Answer(0, {})
    async with session.post(url + "/v1/completions", json=body,
                            headers={"Authorization": f"Bearer {key}"}) as response:
        answer.status = response.status
        async for raw in response.content:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                answer.done = True
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                answer.usage = event.get("usage") or answer.usage
                answer.tokens += [c["text"] for c in event.get("choices") or [] if c.get("text")]
    return answer
