"""The HTTP face of an emulated replica (aiohttp): vLLM's OpenAI API, ``/health`` and ``/metrics``.

Life cycle as a vLLM server's: the port opens only after the (emulated) model load, ``/health`` answers 200
from then on; on :meth:`ReplicaServer.drain` the listening socket closes, requests arriving on open
connections get 503, and requests in flight run to completion.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from disaggpilot.localcluster.emulator.config import EmulatorConfig, resolve
from disaggpilot.localcluster.emulator.engine import Clock, Engine, EngineLimits, EngineRequest
from disaggpilot.localcluster.emulator.metrics import ReplicaMetrics
from disaggpilot.localcluster.emulator.protocol import (
    GenerationRequest,
    RequestError,
    full_response,
    new_id,
    parse_request,
    stream_chunk,
    token_text,
    usage_chunk,
)

log = logging.getLogger("disaggpilot.emulator")
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")
IDLE_TIMEOUT_S = 75.0
"""A connection silent for this long is closed (seconds), as the gateway does (aiohttp's default is an hour)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReplicaServer:
    """One emulated replica: engine, metrics and HTTP server.

    Args:
        config: the replica's settings.
        clock: the engine's clock (wall clock by default).
    """

    def __init__(self, config: EmulatorConfig, clock: Clock | None = None) -> None:
        self.config = config
        resolved = resolve(config)
        # A sequence must fit the KV cache alone, in whole blocks, or it would wait forever.
        kv_whole_blocks = resolved.kv_cache_tokens // config.block_size * config.block_size
        self.max_len = min(resolved.max_model_len, kv_whole_blocks)
        self.metrics = ReplicaMetrics(config.role, config.model_name, resolved.max_model_len,
                                      resolved.perf.kv_bytes_per_token, self._cache_info(resolved.kv_cache_tokens,
                                                                                       resolved.max_model_len))
        limits = EngineLimits(config.max_num_seqs, config.max_num_batched_tokens, resolved.kv_cache_tokens,
                              config.block_size, config.time_scale, resolved.link_gbps, config.kv_transfer_latency_s)
        self.engine = Engine(resolved.perf, limits, clock, self.metrics)
        self.engine_id = str(uuid.UUID(int=random.Random(config.seed * 65536 + config.port).getrandbits(128)))
        self.ready = self.draining = False
        self.in_flight = 0
        self.port = config.port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._engine_task: asyncio.Task[None] | None = None

    def _cache_info(self, kv_tokens: int, max_model_len: int) -> dict[str, str]:
        blocks = kv_tokens // self.config.block_size
        return {"block_size": str(self.config.block_size), "cache_dtype": "auto",
                "gpu_memory_utilization": str(self.config.gpu_memory_utilization),
                "num_gpu_blocks": str(blocks), "kv_cache_size_tokens": str(kv_tokens),
                "kv_cache_max_concurrency": str(kv_tokens / max_model_len),
                "enable_prefix_caching": "False", "user_specified_block_size": "True"}

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8101``."""
        return f"http://{self.config.host}:{self.port}"

    # ----- life cycle ----------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (routes and the HTTP-metrics middleware)."""
        app = web.Application(middlewares=[self._observe_http], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def start(self) -> None:
        """Load (wait the emulated cold start), start the engine, then listen; sets :attr:`port`."""
        await asyncio.sleep(self.config.cold_start_s * self.config.time_scale)
        self._engine_task = asyncio.create_task(self.engine.run())
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0,
                                     keepalive_timeout=IDLE_TIMEOUT_S)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])
        self.ready = True

    async def drain(self, timeout_s: float) -> bool:
        """Stop listening, refuse new requests, and wait up to ``timeout_s`` for those in flight.

        Returns:
            True when every request finished in time.
        """
        self.draining = True
        if self._site is not None:
            await self._site.stop()
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.in_flight == 0

    async def close(self) -> None:
        """Stop the engine and the HTTP server."""
        self.engine.close()
        if self._engine_task is not None:
            await self._engine_task
        if self._runner is not None:
            await self._runner.cleanup()

    # ----- plain endpoints -----------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(self.engine), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _models(self, request: web.Request) -> web.Response:
        name = self.config.model_name
        card = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": name,
                "parent": None, "max_model_len": self.max_len, "permission": []}
        return web.json_response({"object": "list", "data": [card]})

    @web.middleware
    async def _observe_http(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        size = len(body) if isinstance(body, bytes | bytearray) else 0
        self.metrics.observe_http(request.path, request.method, response.status, request.content_length or 0,
                                  size, time.perf_counter() - started)
        return response

    # ----- generation --------------------------------------------------------------------------------------
    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, http: web.Request, chat: bool) -> web.StreamResponse:
        self.in_flight += 1
        try:
            if self.draining:
                raise RequestError("the replica is draining: send the request elsewhere", None, 503)
            parsed = parse_request(await _json(http), chat, self.config.model_name, self.max_len,
                                   self.config.role != "aggregated")
            expected = 1 if parsed.kv_mode == "remote_decode" else parsed.max_tokens
            job = self.engine.submit(EngineRequest(new_id(chat), parsed.prompt_tokens, expected, parsed.kv_mode))
            try:
                if parsed.stream:
                    return await self._stream(http, parsed, job)
                return await self._answer(parsed, job)
            finally:
                self.engine.abort(job)  # a no-op once finished; frees the KV cache if the client went away
        except RequestError as error:
            return web.json_response(error.body(), status=error.status)
        finally:
            self.in_flight -= 1

    async def _answer(self, parsed: GenerationRequest, job: EngineRequest) -> web.Response:
        tokens = 0
        while await job.tokens.get() is not None:
            tokens += 1
        params = self._kv_transfer_params(job) if parsed.kv_mode == "remote_decode" else None
        return web.json_response(full_response(parsed, job.request_id, self.config.model_name, tokens, params))

    def _kv_transfer_params(self, job: EngineRequest) -> dict[str, Any]:
        """What the decode replica needs to pull this prompt's KV cache (NixlConnector's fields)."""
        blocks = -(-job.prompt_tokens // self.config.block_size)
        return {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": self.engine_id,
                "remote_block_ids": list(range(blocks)), "remote_host": self.config.host,
                "remote_port": self.port, "remote_request_id": job.request_id,
                "tp_size": self.config.tensor_parallel}

    async def _stream(self, http: web.Request, parsed: GenerationRequest, job: EngineRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(http)
        model, tokens = self.config.model_name, 0
        while (index := await job.tokens.get()) is not None:
            if parsed.chat and index == 0:  # vLLM's first chat chunk carries the role
                await _send(response, stream_chunk(parsed, job.request_id, model, {"role": "assistant",
                                                                                   "content": ""}, "", None))
            last = index + 1 >= job.max_tokens
            await _send(response, stream_chunk(parsed, job.request_id, model, None, token_text(index),
                                               "length" if last else None))
            tokens += 1
        if parsed.include_usage:
            await _send(response, usage_chunk(parsed, job.request_id, model, tokens))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def _json(http: web.Request) -> object:
    try:
        return await http.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"the body is not valid JSON ({error})") from error


async def _send(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
