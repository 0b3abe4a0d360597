"""Serving one admitted request: P/D orchestration, least-loaded choice, retry and mid-stream resume.

Disaggregated (a ready prefill and a ready decode replica exist): the prefill replica gets the request
with ``max_tokens=1``, not streamed, with ``kv_transfer_params.do_remote_decode``; the decode replica
gets the original request plus the ``kv_transfer_params`` prefill returned, and its answer goes to the
client. Otherwise an aggregated replica serves the request alone.

What is guaranteed when a replica fails (refuses, answers 5xx, times out, drains, or dies):

* before anything reached the client, the whole attempt (prefill and decode) is redone on other
  replicas, up to ``max_attempts`` attempts: the client sees one normal answer;
* during a stream, the text already sent is kept and a continuation is requested (the sent text
  appended to a completion prompt, or continued as the final assistant message of a chat, with
  ``max_tokens`` reduced by the tokens sent); its chunks follow under the same ``id``, so the client
  receives exactly ``max_tokens`` tokens when the replicas honour ``max_tokens`` (``ignore_eos``), never
  a duplicate. The continuation is a new generation: its tokens need not be those the failed replica
  would have produced. A prompt given as token ids cannot be continued; such a stream ends with an
  error event;
* a request is lost only when every attempt failed: a 502 before the first byte, an error event
  (no ``[DONE]``) after it; it counts in ``disaggpilot_gateway_requests_failed_total``.

Tokens are counted as replicas report them in ``usage``; a stream cut short counts one token per
streamed chunk with text (one token per chunk as vLLM and the emulator stream without speculation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from disaggpilot.localcluster.gateway.config import GatewayConfig
from disaggpilot.localcluster.gateway.errors import NoReplicaError, UpstreamError
from disaggpilot.localcluster.gateway.metrics import RequestTrack
from disaggpilot.localcluster.gateway.protocol import ParsedRequest, continuation, decode_body, prefill_body
from disaggpilot.localcluster.gateway.routing import PD_MODE, Replica, ReplicaRegistry
from disaggpilot.localcluster.gateway.upstream import DONE, open_events, post_json

_WAIT_POLL_S = 0.02


class LostRequestError(UpstreamError):
    """Every attempt failed; the request is lost."""


class ClientSink(Protocol):
    """Where the answer goes: the client's connection."""

    started: bool
    """Whether the stream's headers (and maybe events) were sent."""

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one server-sent event (opens the stream on first use)."""

    async def send_done(self) -> None:
        """End the stream with ``data: [DONE]``."""

    async def send_json(self, answer: dict[str, Any]) -> None:
        """Send a whole non-streamed answer."""


@dataclass
class Outcome:
    """What the client got: token counts for metrics, and how many attempts it took."""

    prompt_tokens: int
    output_tokens: int
    attempts: int = 1
    text: list[str] = field(default_factory=list)
    stream_id: str | None = None
    usage_prompt_tokens: int | None = None


class Orchestrator:
    """Runs requests against the replica set.

    Args:
        config: gateway settings (attempts, back-off, replica wait).
        registry: the replica set.
        session: the HTTP client session to replicas.
        clock: monotonic time (seconds), the same the metrics use.
    """

    def __init__(self, config: GatewayConfig, registry: ReplicaRegistry, session: aiohttp.ClientSession,
                 clock: Callable[[], float]) -> None:
        self.config, self.registry, self.session, self.clock = config, registry, session, clock

    async def serve(self, request: ParsedRequest, track: RequestTrack, sink: ClientSink) -> Outcome:
        """Serve ``request`` to ``sink``; raises :class:`LostRequestError` or :class:`NoReplicaError`."""
        outcome = Outcome(request.prompt_tokens, 0)
        current: ParsedRequest | None = request
        failed: set[str] = set()
        while current is not None:
            try:
                await self._attempt(current, outcome, track, sink, failed)
                break
            except UpstreamError as error:
                current = await self._after_failure(request, outcome, error, track)
        if request.stream:
            await self._end_stream(request, outcome, sink)
        return outcome

    async def _after_failure(self, request: ParsedRequest, outcome: Outcome, error: UpstreamError,
                             track: RequestTrack) -> ParsedRequest | None:
        """The request to try next, ``None`` when the answer is already complete; raises when out of tries."""
        if outcome.output_tokens >= request.max_tokens:
            return None
        if outcome.attempts >= self.config.max_attempts:
            raise LostRequestError(f"{outcome.attempts} attempts failed; last: {error}") from error
        following = request if outcome.output_tokens == 0 else continuation(
            request, "".join(outcome.text), outcome.output_tokens)
        if following is None:
            raise LostRequestError(f"cannot continue a token-id prompt after: {error}") from error
        track.retried()
        await asyncio.sleep(self.config.retry_backoff_s * 2 ** (outcome.attempts - 1))
        outcome.attempts += 1
        return following

    async def _attempt(self, request: ParsedRequest, outcome: Outcome, track: RequestTrack, sink: ClientSink,
                       failed: set[str]) -> None:
        mode = await self._wait_for_mode()
        kv_params: dict[str, Any] | None = None
        if mode == PD_MODE:
            kv_params = await self._prefill(request, outcome, failed)
        role = "decode" if mode == PD_MODE else "aggregated"
        replica = await self._choose(role, failed)
        body = decode_body(request, kv_params)
        with self.registry.lease(replica, request.prompt_tokens + request.max_tokens):
            try:
                if request.stream:
                    await self._relay_stream(replica, request, body, outcome, track, sink)
                else:
                    await self._relay_json(replica, request, body, outcome, sink)
            except UpstreamError:
                self._failed(replica, failed)
                raise

    async def _prefill(self, request: ParsedRequest, outcome: Outcome, failed: set[str]) -> dict[str, Any]:
        replica = await self._choose("prefill", failed)
        with self.registry.lease(replica, request.prompt_tokens):
            try:
                answer = await post_json(self.session, replica, request.path, prefill_body(request))
                kv_params = answer.get("kv_transfer_params")
                if not isinstance(kv_params, dict):
                    raise UpstreamError(f"{replica.name}: prefill answer lacks kv_transfer_params")
            except UpstreamError:
                self._failed(replica, failed)
                raise
        usage = answer.get("usage") or {}
        if outcome.usage_prompt_tokens is None and isinstance(usage.get("prompt_tokens"), int):
            outcome.usage_prompt_tokens = usage["prompt_tokens"]
        return kv_params

    async def _relay_stream(self, replica: Replica, request: ParsedRequest, body: dict[str, Any],
                            outcome: Outcome, track: RequestTrack, sink: ClientSink) -> None:
        streamed_before = outcome.output_tokens
        async with open_events(self.session, replica, request.path, body) as events:
            async for event in events:
                if event == DONE:
                    return
                assert isinstance(event, dict)
                if event.get("choices"):
                    await self._forward_chunk(event, outcome, track, sink)
                elif isinstance(event.get("usage"), dict):
                    self._take_usage(event["usage"], outcome, streamed_before)

    async def _forward_chunk(self, event: dict[str, Any], outcome: Outcome, track: RequestTrack,
                             sink: ClientSink) -> None:
        outcome.stream_id = outcome.stream_id or event.get("id")
        event["id"] = outcome.stream_id
        event.pop("usage", None)
        text = _chunk_text(event)
        await sink.send_event(event)
        if text:
            outcome.text.append(text)
            outcome.output_tokens += 1
            track.first_token(self.clock())

    @staticmethod
    def _take_usage(usage: dict[str, Any], outcome: Outcome, streamed_before: int) -> None:
        if isinstance(usage.get("completion_tokens"), int):
            outcome.output_tokens = streamed_before + usage["completion_tokens"]
        if outcome.usage_prompt_tokens is None and isinstance(usage.get("prompt_tokens"), int):
            outcome.usage_prompt_tokens = usage["prompt_tokens"]

    async def _relay_json(self, replica: Replica, request: ParsedRequest, body: dict[str, Any],
                          outcome: Outcome, sink: ClientSink) -> None:
        answer = await post_json(self.session, replica, request.path, body)
        usage = answer.get("usage") or {}
        outcome.output_tokens = int(usage.get("completion_tokens", request.max_tokens))
        if outcome.usage_prompt_tokens is None and isinstance(usage.get("prompt_tokens"), int):
            outcome.usage_prompt_tokens = usage["prompt_tokens"]
        answer.pop("kv_transfer_params", None)
        await sink.send_json(answer)

    async def _end_stream(self, request: ParsedRequest, outcome: Outcome, sink: ClientSink) -> None:
        if outcome.usage_prompt_tokens is not None:
            outcome.prompt_tokens = outcome.usage_prompt_tokens
        if request.include_usage:
            usage = {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.output_tokens,
                     "total_tokens": outcome.prompt_tokens + outcome.output_tokens}
            object_kind = "chat.completion.chunk" if request.kind == "chat" else "text_completion"
            await sink.send_event({"id": outcome.stream_id, "object": object_kind, "model": request.body["model"],
                                   "choices": [], "usage": usage})
        await sink.send_done()

    async def _wait_for_mode(self) -> str:
        deadline = self.clock() + self.config.replica_wait_s
        while (mode := self.registry.mode()) is None:
            if self.clock() >= deadline:
                raise NoReplicaError(f"no ready replica for {self.config.replica_wait_s:g} s")
            await asyncio.sleep(_WAIT_POLL_S)
        return mode

    async def _choose(self, role: str, failed: set[str]) -> Replica:
        deadline = self.clock() + self.config.replica_wait_s
        while (replica := self.registry.pick(role, failed) or self.registry.pick(role)) is None:
            if self.clock() >= deadline:
                raise NoReplicaError(f"no ready {role} replica for {self.config.replica_wait_s:g} s")
            await asyncio.sleep(_WAIT_POLL_S)
        return replica

    def _failed(self, replica: Replica, failed: set[str]) -> None:
        failed.add(replica.name)
        self.registry.mark_failed(replica)


def _chunk_text(event: dict[str, Any]) -> str:
    """The output text of a streamed chunk (completions ``text`` or chat ``delta.content``)."""
    choice = event["choices"][0] if isinstance(event["choices"], list) else {}
    if not isinstance(choice, dict):
        return ""
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""
