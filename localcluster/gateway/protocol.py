"""OpenAI request checks and the bodies the gateway sends to replicas (vLLM's P/D handshake).

Checks run before any replica is touched; each failure names the field. Prompt length is counted the
way the emulator counts it (one token per whitespace-separated word; a list of token ids counts its
length): in front of real vLLM this is an estimate, and vLLM still enforces its own limit. Because a word
count can be fooled (10 MB without a space is one word), a prompt is also bounded in characters
(``max_model_len x max_chars_per_token``), and token ids must be non-negative integers below ``vocab_size``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from disaggpilot.localcluster.gateway.config import GatewayConfig
from disaggpilot.localcluster.gateway.errors import ClientRequestError

COMPLETIONS = "completions"
CHAT = "chat"
PATHS = {COMPLETIONS: "/v1/completions", CHAT: "/v1/chat/completions"}
PREFILL_KV_PARAMS: dict[str, Any] = {
    "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None, "remote_block_ids": None,
    "remote_host": None, "remote_port": None,
}
"""What vLLM's NixlConnector expects on the request to the prefill replica."""

TokenCounter = Callable[[str], int]


def count_words(text: str) -> int:
    """Tokens of ``text`` as the emulator counts them: whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True)
class ParsedRequest:
    """A checked client request.

    Attributes:
        kind: ``completions`` or ``chat``.
        body: the JSON body, with ``model`` and ``max_tokens`` filled in.
        prompt_tokens: the gateway's count of prompt tokens (tokens).
        max_tokens: output tokens asked for (tokens).
        stream: whether the client wants server-sent events.
        include_usage: whether the client asked for the usage chunk at the end of a stream.
    """

    kind: str
    body: dict[str, Any]
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool

    @property
    def path(self) -> str:
        """The replica path serving this kind of request."""
        return PATHS[self.kind]


def parse_request(raw: bytes, kind: str, config: GatewayConfig, counter: TokenCounter = count_words) -> ParsedRequest:
    """Check a client body; raises :class:`ClientRequestError` (400/404) naming the field at fault."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClientRequestError(400, f"the body is not valid JSON ({error.__class__.__name__} at "
                                      f"position {getattr(error, 'pos', 0)})", "body") from None
    _expect(isinstance(body, dict), "body", "the body must be a JSON object")
    _check_model(body, config)
    prompt_tokens, prompt_field = (_chat_tokens(body, counter, config), "messages") if kind == CHAT else (
        _prompt_tokens(body, counter, config), "prompt")
    max_field = "max_completion_tokens" if kind == CHAT and "max_completion_tokens" in body else "max_tokens"
    max_tokens = _max_tokens(body.get(max_field), max_field, prompt_tokens, config)
    _expect(prompt_tokens <= config.max_model_len, prompt_field,
            f"the prompt has {prompt_tokens} tokens, more than the model's context of {config.max_model_len}",
            "prompt_too_long")
    _expect(prompt_tokens + max_tokens <= config.max_model_len, max_field,
            f"prompt ({prompt_tokens}) + {max_field} ({max_tokens}) exceeds the model's context of "
            f"{config.max_model_len} tokens; lower {max_field}")
    stream = body.get("stream", False)
    _expect(isinstance(stream, bool), "stream", "stream must be true or false")
    options = body.get("stream_options") or {}
    _expect(isinstance(options, dict), "stream_options", "stream_options must be an object")
    _expect(body.get("n", 1) == 1, "n", "the gateway serves one choice per request (n=1)")
    body[max_field] = max_tokens
    return ParsedRequest(kind, body, prompt_tokens, max_tokens, stream, bool(options.get("include_usage")))


def prefill_body(request: ParsedRequest) -> dict[str, Any]:
    """The prefill replica's request: one token, not streamed, asking to keep the KV for a remote decode."""
    body = copy.deepcopy(request.body)
    body.update(stream=False, max_tokens=1, kv_transfer_params=dict(PREFILL_KV_PARAMS))
    if "max_completion_tokens" in body:
        body["max_completion_tokens"] = 1
    body.pop("stream_options", None)
    return body


def decode_body(request: ParsedRequest, kv_transfer_params: dict[str, Any] | None) -> dict[str, Any]:
    """The decode (or aggregated) replica's request; a stream always asks for usage (the gateway counts it)."""
    body = copy.deepcopy(request.body)
    if kv_transfer_params is not None:
        body["kv_transfer_params"] = kv_transfer_params
    if request.stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


def continuation(request: ParsedRequest, emitted_text: str, emitted_tokens: int,
                 counter: TokenCounter = count_words) -> ParsedRequest | None:
    """The request that produces the rest of an answer whose first ``emitted_tokens`` were sent.

    The text already sent becomes part of the prompt (completions) or a final assistant message that the
    replica continues (chat, vLLM's ``continue_final_message``), and ``max_tokens`` shrinks by what was
    sent. ``None`` when it cannot be built: a prompt given as token ids has no text to extend.
    """
    body = copy.deepcopy(request.body)
    remaining = request.max_tokens - emitted_tokens
    if request.kind == COMPLETIONS:
        if not isinstance(body.get("prompt"), str):
            return None
        body["prompt"] += emitted_text
    else:
        messages = body["messages"]
        if body.get("continue_final_message") and messages and messages[-1].get("role") == "assistant":
            messages[-1] = {**messages[-1], "content": str(messages[-1].get("content") or "") + emitted_text}
        else:
            messages.append({"role": "assistant", "content": emitted_text})
        body.update(continue_final_message=True, add_generation_prompt=False)
    body["max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"] = remaining
    return replace(request, body=body, max_tokens=remaining,
                   prompt_tokens=request.prompt_tokens + counter(emitted_text))


def error_body(status: int, message: str, param: str | None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return {"object": "error", "error": {"message": message, "type": kind, "param": param, "code": status}}


def _expect(condition: bool, param: str, message: str, reason: str | None = None) -> None:
    if not condition:
        raise ClientRequestError(400, f"{param}: {message}", param, reason=reason)


def _check_chars(characters: int, param: str, config: GatewayConfig) -> None:
    _expect(characters <= config.max_prompt_chars, param,
            f"the prompt has {characters} characters, more than the gateway's limit of {config.max_prompt_chars} "
            f"(max_model_len {config.max_model_len} x max_chars_per_token {config.max_chars_per_token})",
            "prompt_too_long")


def _check_token_ids(ids: list[Any], config: GatewayConfig) -> None:
    bound = config.vocab_size or None
    for index, token in enumerate(ids):
        valid = isinstance(token, int) and not isinstance(token, bool) and token >= 0 and (
            bound is None or token < bound)
        limit = f"below the vocabulary size {bound}" if bound else "non-negative"
        _expect(valid, f"prompt[{index}]", f"token id {token!r} is invalid: give integers >= 0, {limit}",
                "invalid_token_ids")


def _check_model(body: dict[str, Any], config: GatewayConfig) -> None:
    model = body.setdefault("model", config.model)
    if model != config.model:
        raise ClientRequestError(404, f"model: {model!r} is not served here; use {config.model!r}", "model")


def _prompt_tokens(body: dict[str, Any], counter: TokenCounter, config: GatewayConfig) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = body["prompt"] = prompt[0]
    if isinstance(prompt, str):
        _check_chars(len(prompt), "prompt", config)  # before counting: the count is linear in the text
        return counter(prompt)
    _expect(isinstance(prompt, list) and len(prompt) > 0, "prompt",
            "give a string or a non-empty list of token ids (one prompt per request)")
    _check_token_ids(prompt, config)  # type: ignore[arg-type]
    return len(prompt)  # type: ignore[arg-type]


def _chat_tokens(body: dict[str, Any], counter: TokenCounter, config: GatewayConfig) -> int:
    messages = body.get("messages")
    _expect(isinstance(messages, list) and len(messages) > 0, "messages", "give a non-empty list of messages")
    total, characters = 0, 0
    for index, message in enumerate(messages):  # type: ignore[arg-type]
        ok = isinstance(message, dict) and isinstance(message.get("role"), str)
        _expect(ok, f"messages[{index}]", "each message is an object with a 'role'")
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        _expect(content is None or isinstance(content, str), f"messages[{index}].content",
                "give a string or a list of text parts")
        characters += len(content or "")
        _check_chars(characters, "messages", config)
        total += counter(content or "")
    return total


def _max_tokens(value: object, field_name: str, prompt_tokens: int, config: GatewayConfig) -> int:
    if value is None:
        return max(1, min(config.default_max_tokens, config.max_model_len - prompt_tokens))
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    _expect(ok, field_name, "use an integer >= 1 (tokens)")
    return int(value)  # type: ignore[call-overload]
