"""A minimal OpenAI-compatible replica for gateway tests: a real aiohttp server on a free loopback port.

It speaks the rig contract's P/D handshake (a prefill replica answers ``max_tokens=1`` requests carrying
``kv_transfer_params.do_remote_decode`` with ``kv_transfer_params`` for the decode replica; a decode replica
requires them), records every body it receives, and can be told to answer 503 (draining), to drop the
connection before answering, or to die after streaming some tokens. Output token ``i`` is the word
``tok<i>``; a prompt string counts one token per word. Below it: a rig of such replicas behind a real
gateway, and a client that collects streamed answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from disaggpilot.env.live.ports import free_port
from disaggpilot.localcluster.gateway import Gateway, GatewayConfig, ReplicaEndpoint, TenantConfig


@dataclass
class FakeReplica:
    """One fake replica.

    Attributes:
        name: replica name (also its ``remote_engine_id``).
        role: ``prefill``, ``decode`` or ``aggregated``.
        token_delay_s: pause before each streamed token (seconds).
        fail_status: answer every completion request with this status (e.g. 503 while draining).
        die_after_tokens: drop the connection after streaming this many tokens, ``die_times`` times.
        die_times: how many requests die (each later one is served normally).
        drop_before_answer: drop the connection before any answer, this many times.
        received: every completion body received, in order.
    """

    name: str
    role: str = "aggregated"
    token_delay_s: float = 0.0
    fail_status: int | None = None
    die_after_tokens: int | None = None
    die_times: int = 1
    drop_before_answer: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL once started."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeReplica:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/health", _healthy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def endpoint(self, state: str = "ready") -> dict[str, str]:
        """This replica as a discovery-file entry."""
        return {"name": self.name, "role": self.role, "url": self.url, "state": state}

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        if self.drop_before_answer > 0:
            self.drop_before_answer -= 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if self.fail_status is not None:
            return _error(self.fail_status, "replica is draining")
        problem = self._check_handshake(body)
        if problem:
            return _error(400, problem)
        prompt = _prompt_tokens(body)
        if self.role == "prefill":
            return web.json_response(self._prefill_answer(body, prompt))
        if body.get("stream"):
            return await self._stream(request, body, prompt)
        return web.json_response(_whole_answer(body, prompt))

    def _check_handshake(self, body: dict[str, Any]) -> str:
        kv = body.get("kv_transfer_params")
        if self.role == "prefill":
            ok = isinstance(kv, dict) and kv.get("do_remote_decode") is True and body.get("max_tokens") == 1
            return "" if ok and not body.get("stream") else "prefill needs max_tokens=1, do_remote_decode, no stream"
        if self.role == "decode":
            ok = isinstance(kv, dict) and kv.get("do_remote_prefill") is True and kv.get("remote_engine_id")
            return "" if ok else "decode needs kv_transfer_params from a prefill replica"
        return "" if kv is None else "an aggregated replica takes no kv_transfer_params"

    def _prefill_answer(self, body: dict[str, Any], prompt: int) -> dict[str, Any]:
        answer = _whole_answer({**body, "max_tokens": 1}, prompt)
        answer["kv_transfer_params"] = {
            "do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": self.name,
            "remote_block_ids": [1, 2, 3], "remote_host": "127.0.0.1", "remote_port": self.port}
        return answer

    async def _stream(self, request: web.Request, body: dict[str, Any], prompt: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chat = "messages" in body
        total = int(body["max_tokens"])
        for index in range(total):
            if self.die_after_tokens is not None and self.die_times > 0 and index == self.die_after_tokens:
                self.die_times -= 1
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(self.token_delay_s)
            text = f"tok{index} "
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            await _send(response, {"id": f"cmpl-{self.name}", "choices": [choice]})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": prompt, "completion_tokens": total, "total_tokens": prompt + total}
            await _send(response, {"id": f"cmpl-{self.name}", "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    prompt = body.get("prompt")
    return len(prompt) if isinstance(prompt, list) else len(str(prompt).split())


def _whole_answer(body: dict[str, Any], prompt: int) -> dict[str, Any]:
    total = int(body["max_tokens"])
    text = "".join(f"tok{i} " for i in range(total))
    choice = {"index": 0, "message": {"role": "assistant", "content": text}} if "messages" in body else {
        "index": 0, "text": text}
    usage = {"prompt_tokens": prompt, "completion_tokens": total, "total_tokens": prompt + total}
    return {"id": "cmpl-whole", "choices": [choice | {"finish_reason": "length"}], "usage": usage}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "error", "param": None, "code": status}},
                             status=status)


# --- the rig: fake replicas behind a real gateway, and a client ------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
KEYS = {"alpha": "alpha-secret-key-0001", "beta": "beta-secret-key-0002"}
MODEL = "tiny"
_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T], timeout_s: float = 20.0) -> _T:
    """Run an async test body with a hard timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def gateway_config(fakes: list[FakeReplica], tenants: list[TenantConfig] | None = None,
                   **overrides: Any) -> GatewayConfig:
    """A gateway over ``fakes`` (static list; ``replicas=`` overrides it) for tenants alpha and beta."""
    settings: dict[str, Any] = {
        "tenants": tenants or [TenantConfig(name=name, api_key=key) for name, key in KEYS.items()],
        "replicas": [ReplicaEndpoint(**fake.endpoint()) for fake in fakes],
        "model": MODEL, "max_model_len": 256, "retry_backoff_s": 0.0, "replica_wait_s": 2.0,
        "connect_timeout_s": 1.0, "first_byte_timeout_s": 5.0,
    }
    settings.update(overrides)
    return GatewayConfig(**settings)


@asynccontextmanager
async def rig(replicas: list[FakeReplica], **overrides: Any) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    """Start ``replicas`` and a gateway in front of them; stop everything afterwards."""
    for replica in replicas:
        await replica.start()
    gateway = Gateway(gateway_config(replicas, **overrides))
    try:
        await gateway.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            yield gateway, session
    finally:
        await gateway.stop()
        for replica in replicas:
            await replica.stop()


@dataclass
class Answer:
    """What a client got back."""

    status: int
    headers: dict[str, str]
    tokens: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    done: bool = False
    ids: set[str] = field(default_factory=set)
    json: dict[str, Any] | None = None


def prompt_of(words: int, marker: str = "w") -> str:
    """A prompt of ``words`` whitespace-separated words."""
    return " ".join(f"{marker}{i}" for i in range(words))


async def call(session: aiohttp.ClientSession, url: str, key: str | None, *, words: int = 5,
               max_tokens: int = 4, stream: bool = True, chat: bool = False, raw: bytes | None = None,
               extra: dict[str, Any] | None = None) -> Answer:
    """Send one request to the gateway and collect the answer."""
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body: dict[str, Any] = {"model": MODEL, "max_tokens": max_tokens, "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt_of(words)}]
    else:
        body["prompt"] = prompt_of(words)
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(extra or {})
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    data = raw if raw is not None else json.dumps(body).encode()
    async with session.post(url + path, data=data, headers=headers) as response:
        answer = Answer(response.status, dict(response.headers))
        if response.status != 200 or not stream:
            answer.json = await response.json(content_type=None)
            return answer
        async for line in response.content:
            _take_line(line.decode().strip(), answer, chat)
    return answer


def _take_line(line: str, answer: Answer, chat: bool) -> None:
    if not line.startswith("data: "):
        return
    payload = line[6:]
    if payload == "[DONE]":
        answer.done = True
        return
    event = json.loads(payload)
    if event.get("usage"):
        answer.usage = event["usage"]
    for choice in event.get("choices") or []:
        text = choice["delta"].get("content") if chat else choice.get("text")
        if text:
            answer.tokens.append(text)
            answer.ids.add(event["id"])


# --- the real emulator (E1's localcluster.emulator), started as subprocesses --------------------------------------
def emulator_available() -> bool:
    """Whether ``python -m disaggpilot.localcluster.emulator`` can run (its ``__main__`` module exists)."""
    try:
        return importlib.util.find_spec("disaggpilot.localcluster.emulator.__main__") is not None
    except ImportError:
        return False



@contextmanager
def start_emulators(roles: list[str], served_name: str = "emu", time_scale: float = 0.01,
                    ) -> Iterator[list[tuple[dict[str, str], subprocess.Popen[bytes]]]]:
    """Start one emulator process per role; yields (discovery entry, process) pairs; kills them afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    entries = []
    try:
        for index, role in enumerate(roles):
            port = free_port()
            command = [sys.executable, "-m", "disaggpilot.localcluster.emulator", "--role", role, "--host", "127.0.0.1",
                       "--port", str(port), "--served-model-name", served_name, "--time-scale", str(time_scale)]
            processes.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            entries.append({"name": f"{role}-{index}", "role": role, "url": f"http://127.0.0.1:{port}",
                            "state": "ready"})
        for entry in entries:
            _wait_healthy(entry["url"], deadline_s=time.monotonic() + 30.0)
        yield list(zip(entries, processes, strict=True))
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def _wait_healthy(url: str, deadline_s: float) -> None:
    while time.monotonic() < deadline_s:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/health did not answer 200 in time")
