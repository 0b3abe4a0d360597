"""The gateway's HTTP face: authentication, checks, admission, then the orchestrator; metrics and health.

Endpoints: ``POST /v1/completions`` and ``POST /v1/chat/completions`` (OpenAI, streamed or not),
``GET /v1/models``, ``GET /metrics`` (Prometheus text, no authentication) and ``GET /health``.
Order of checks: API key (401), body size (413, before the body is read: ``Content-Length``, then a
streamed read that stops at the limit), body (400/404, naming the field), admission (429 + ``Retry-After``);
only then is a replica touched. Every 4xx answer is counted by reason (``..._requests_refused_total``).
Keys are compared as SHA-256 digests in constant time, over every tenant.
The log has one line per request (tenant, path, status, attempts, tokens, latency): never a key or a body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from disaggpilot.env.errors import EnvError, PermanentError
from disaggpilot.localcluster.gateway.admission import TenantAdmission, retry_after_header
from disaggpilot.localcluster.gateway.config import GatewayConfig
from disaggpilot.localcluster.gateway.discovery import DiscoveryWatcher
from disaggpilot.localcluster.gateway.errors import ClientRequestError, NoReplicaError, UpstreamRejectedError
from disaggpilot.localcluster.gateway.metrics import CONTENT_TYPE, UNKNOWN_TENANT, GatewayMetrics, RequestTrack
from disaggpilot.localcluster.gateway.protocol import (
    CHAT,
    COMPLETIONS,
    TokenCounter,
    count_words,
    error_body,
    parse_request,
)
from disaggpilot.localcluster.gateway.proxy import LostRequestError, Orchestrator, Outcome
from disaggpilot.localcluster.gateway.routing import ReplicaRegistry

log = logging.getLogger("disaggpilot.gateway")
READ_CHUNK_BYTES = 1 << 16
"""A request body is read in pieces of at most this size, so an oversize body stops at the limit (bytes)."""
IDLE_TIMEOUT_S = 75.0
"""A client connection that sends nothing for this long is closed (seconds): before its first request, between
requests, or half-way through its headers (aiohttp's keep-alive timer; its default is an hour)."""


class ClientGoneError(EnvError, PermanentError):
    """The client closed its connection while the answer was being sent (nobody is left to retry for)."""


class _ResponseSink:
    """Writes the answer to the client; a dead client connection becomes :class:`ClientGoneError`."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.started = False
        self.response: web.StreamResponse | None = None

    async def send_event(self, event: dict[str, Any]) -> None:
        await self._write(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")

    async def send_done(self) -> None:
        await self._write(b"data: [DONE]\n\n")

    async def send_json(self, answer: dict[str, Any]) -> None:
        self.response = web.json_response(answer)

    async def close(self) -> None:
        if self.started and self.response is not None:
            await _guard(self.response.write_eof())

    async def _write(self, data: bytes) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                        "Cache-Control": "no-cache"})
            await _guard(self.response.prepare(self.request))
            self.started = True
        await _guard(self.response.write(data))


async def _guard(awaitable: Any) -> None:
    try:
        await awaitable
    except (ConnectionError, aiohttp.ClientConnectionError) as error:
        raise ClientGoneError(str(error)) from None


def error_response(status: int, message: str, param: str | None = None, retry_after_s: float | None = None,
                   ) -> web.Response:
    """An OpenAI-style JSON error, with ``Retry-After`` when a wait is known."""
    headers = {"Retry-After": retry_after_header(retry_after_s)} if retry_after_s is not None else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.json_response(error_body(status, message, param), status=status, headers=headers)


class Gateway:
    """The tenant-aware P/D gateway; ``await start()`` returns its base URL, ``await stop()`` ends it.

    Args:
        config: settings (tenants, replicas or discovery file, limits).
        clock: monotonic time (seconds) for latencies, admission and cool-downs.
        token_counter: counts a prompt string's tokens (default: whitespace words, as the emulator does).
    """

    def __init__(self, config: GatewayConfig, *, clock: Callable[[], float] = time.monotonic,
                 token_counter: TokenCounter = count_words) -> None:
        self.config, self.clock, self.token_counter = config, clock, token_counter
        self.metrics = GatewayMetrics(config.tenants)
        self.admission = TenantAdmission(config.tenants, clock)
        self.registry = ReplicaRegistry(clock, config.failure_cooldown_s)
        self.registry.update(config.replicas)
        self.watcher = DiscoveryWatcher(config.discovery_file, self.registry, config.discovery_poll_s) \
            if config.discovery_file else None
        self._keys = [(hashlib.sha256(t.api_key.encode()).digest(), t.name) for t in config.tenants]
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> str:
        """Listen, start watching the discovery file; returns ``http://host:port``."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s,
                                        sock_read=self.config.first_byte_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        self.orchestrator = Orchestrator(self.config, self.registry, self._session, self.clock)
        if self.watcher is not None:
            self.watcher.poll_once()
            self._watch_task = asyncio.create_task(self.watcher.run())
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False,
                                     keepalive_timeout=IDLE_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.config.host}:{port}"
        log.info("gateway listening on %s, tenants %s", self.url, [t.name for t in self.config.tenants])
        return self.url

    async def stop(self) -> None:
        """Stop listening, stop the watcher, close connections to replicas."""
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.body_limit_bytes)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        return app

    def authenticate(self, header: str | None) -> str:
        """The tenant owning the bearer key in ``header``; raises 401 when missing or unknown."""
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            raise ClientRequestError(401, "missing API key: send 'Authorization: Bearer <key>'")
        presented = hashlib.sha256(header[7:].strip().encode()).digest()
        owner = None
        for digest, name in self._keys:  # every key is compared, so timing does not tell which matched
            if hmac.compare_digest(digest, presented):
                owner = name
        if owner is None:
            raise ClientRequestError(401, "invalid API key")
        return owner

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, COMPLETIONS)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, CHAT)

    async def read_body(self, request: web.Request) -> bytes:
        """The request body, read in bounded pieces; raises 413 as soon as it passes the configured limit."""
        limit = self.config.body_limit_bytes
        too_large = ClientRequestError(413, f"the request body is larger than the gateway's limit of {limit} bytes "
                                            "(max_body_bytes; by default derived from max_model_len)", "body")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
            body.extend(chunk)
            if len(body) > limit:
                raise too_large
        return bytes(body)

    async def _serve(self, request: web.Request, kind: str) -> web.StreamResponse:
        arrival, tenant = self.clock(), UNKNOWN_TENANT
        try:
            tenant = self.authenticate(request.headers.get("Authorization"))
            parsed = parse_request(await self.read_body(request), kind, self.config, self.token_counter)
        except ClientRequestError as error:
            return self._refuse(request, tenant, error)
        track = self.metrics.arrive(tenant, arrival)
        try:
            self.admission.admit(tenant, parsed.prompt_tokens + parsed.max_tokens)
        except ClientRequestError as error:
            self.metrics.refuse(tenant, error.reason)
            track.reject()
            log.info("tenant=%s path=%s status=429", tenant, request.path)
            return error_response(429, error.message, None, error.retry_after_s)
        track.admit()
        ttft_slo_s = self.metrics.objectives[tenant].ttft_slo_s  # missed if no first token by then
        timer = asyncio.get_running_loop().call_later(ttft_slo_s, lambda: track.judge_late(self.clock()))
        try:
            return await self._run(request, parsed, tenant, track)
        finally:
            timer.cancel()
            self.admission.release(tenant)

    async def _run(self, request: web.Request, parsed: Any, tenant: str, track: RequestTrack,
                   ) -> web.StreamResponse:
        sink = _ResponseSink(request)
        status, outcome = 200, None
        try:
            outcome = await self.orchestrator.serve(parsed, track, sink)
            track.finish(self.clock(), outcome.prompt_tokens, outcome.output_tokens)
            await sink.close()
            assert sink.response is not None
            return sink.response
        except (NoReplicaError, LostRequestError) as error:
            status = 503 if isinstance(error, NoReplicaError) else 502
            track.reject(lost=isinstance(error, LostRequestError))
            return await self._fail(sink, status, str(error))
        except UpstreamRejectedError as error:
            status = error.status
            track.reject()
            self.metrics.refuse(tenant, "upstream_rejected")
            return web.Response(status=error.status, body=error.body, content_type="application/json")
        except (ClientGoneError, asyncio.CancelledError):
            status = 499
            track.abandon()
            raise
        finally:
            self._log(tenant, request.path, status, outcome, arrival=track.arrival_s)

    def _refuse(self, request: web.Request, tenant: str, error: ClientRequestError) -> web.Response:
        """Answer a refusal before admission, count it, and log it (never the key, never the body)."""
        self.metrics.refuse(tenant, error.reason)
        log.info("tenant=%s path=%s status=%d reason=%s param=%s", tenant, request.path, error.status,
                 error.reason, error.param)
        response = error_response(error.status, error.message, error.param)
        if error.status == 413:
            response.force_close()  # the unread rest of the body is not worth receiving
        return response

    async def _fail(self, sink: _ResponseSink, status: int, message: str) -> web.StreamResponse:
        if not sink.started:
            return error_response(status, message, None, 1.0)
        try:  # mid-stream: an error event and no [DONE], so the client knows the answer is incomplete
            await sink.send_event(error_body(status, message, None))
            await sink.close()
        except ClientGoneError:
            pass
        assert sink.response is not None
        return sink.response

    def _log(self, tenant: str, path: str, status: int, outcome: Outcome | None, arrival: float) -> None:
        tokens = (outcome.prompt_tokens, outcome.output_tokens, outcome.attempts) if outcome else (0, 0, 0)
        log.info("tenant=%s path=%s status=%d prompt_tokens=%d output_tokens=%d attempts=%d e2e_s=%.4f",
                 tenant, path, status, *tokens, self.clock() - arrival)

    async def _models(self, request: web.Request) -> web.Response:
        try:
            self.authenticate(request.headers.get("Authorization"))
        except ClientRequestError as error:
            return self._refuse(request, UNKNOWN_TENANT, error)
        model = {"id": self.config.model, "object": "model", "owned_by": "disaggpilot",
                 "max_model_len": self.config.max_model_len}
        return web.json_response({"object": "list", "data": [model]})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, request: web.Request) -> web.Response:
        replicas = [{"name": r.name, "role": r.endpoint.role, "state": r.endpoint.state, "listed": r.listed,
                     "in_flight": r.in_flight} for r in self.registry.replicas()]
        return web.json_response({"status": "ok", "mode": self.registry.mode(), "replicas": replicas})
