"""The OpenAI-compatible request and response bodies of an emulated replica, without a tokenizer.

Token accounting (the rig's contract): a prompt string counts one token per whitespace-separated word, a
prompt of token ids counts its ids, a chat counts the words of its messages' text (no template tokens).
The answer is always exactly ``max_tokens`` tokens, the words ``tok0 tok1 ...`` (as with ``ignore_eos``);
a chat request without ``max_tokens`` therefore runs to the context limit, as vLLM's default does when no
end-of-sequence token comes.

P/D handshake (vLLM's NixlConnector): ``kv_transfer_params`` with ``do_remote_decode: true`` asks a replica
to compute the prompt only and answer, non-streaming, with the parameters a decode replica needs to pull
the KV cache; ``do_remote_prefill: true`` with those parameters asks a replica to pull the KV cache instead
of computing the prompt.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from disaggpilot.env.errors import EnvError, PermanentError

DEFAULT_COMPLETION_MAX_TOKENS = 16  # vLLM's default for /v1/completions
REMOTE_PREFILL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "remote_engine_id": str, "remote_block_ids": list, "remote_host": str, "remote_port": int,
}


class RequestError(EnvError, PermanentError):
    """A request the replica refuses as sent (a 503 tells the client to send it elsewhere); rendered as an
    OpenAI-style JSON error.

    Args:
        message: what is wrong and how to fix it.
        param: the offending field, or ``None``.
        status: HTTP status (400 bad request, 404 unknown model, 503 draining).
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status

    def body(self) -> dict[str, Any]:
        """The JSON error body vLLM's server returns."""
        kind = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}.get(
            self.status, "InternalServerError")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class GenerationRequest:
    """A validated completion or chat request."""

    chat: bool
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool
    kv_mode: str
    """``local``, ``remote_decode`` (compute the prompt only) or ``remote_prefill`` (pull its KV)."""


def parse_request(body: object, chat: bool, model_name: str, max_len: int, pd_role: bool) -> GenerationRequest:
    """Validate a ``/v1/completions`` (``chat=False``) or ``/v1/chat/completions`` body.

    Args:
        body: the decoded JSON.
        chat: whether it is a chat request.
        model_name: the served model name.
        max_len: the most tokens prompt plus output may hold (tokens).
        pd_role: the replica has a KV connector (prefill or decode role).

    Raises:
        RequestError: naming the field at fault.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != model_name:
        raise RequestError(f"The model `{model}` does not exist: use `{model_name}`.", "model", 404)
    prompt = _chat_tokens(body.get("messages")) if chat else _prompt_tokens(body.get("prompt"))
    _require(body.get("n", 1) == 1, "n", "only n=1 is supported")
    stream = body.get("stream", False)
    _require(isinstance(stream, bool), "stream", "must be true or false")
    include_usage = _include_usage(body.get("stream_options"), stream)
    max_tokens = _max_tokens(body, chat, prompt, max_len)
    kv_mode = _kv_mode(body.get("kv_transfer_params"), pd_role, stream)
    return GenerationRequest(chat, prompt, max_tokens, stream, include_usage, kv_mode)


def _require(condition: bool, param: str, fix: str) -> None:
    if not condition:
        raise RequestError(f"{param} is invalid: {fix}", param)


def _prompt_tokens(prompt: object) -> int:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        tokens = len(prompt.split())
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        tokens = len(prompt)
    else:
        raise RequestError("prompt is invalid: give one string or one list of token ids (no batches)", "prompt")
    _require(tokens >= 1, "prompt", "the prompt is empty")
    return tokens


def _chat_tokens(messages: object) -> int:
    _require(isinstance(messages, list) and len(messages) > 0, "messages", "give a non-empty list of messages")
    assert isinstance(messages, list)
    tokens = 0
    for message in messages:
        _require(isinstance(message, dict) and "role" in message, "messages", "each message needs a role")
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        _require(content is None or isinstance(content, str), "messages", "content must be text")
        tokens += len((content or "").split())
    _require(tokens >= 1, "messages", "the messages hold no text")
    return tokens


def _include_usage(options: object, stream: bool) -> bool:
    if options is None:
        return False
    _require(stream and isinstance(options, dict), "stream_options", "only with stream=true, as an object")
    assert isinstance(options, dict)
    return bool(options.get("include_usage", False))


def _max_tokens(body: dict[str, Any], chat: bool, prompt: int, max_len: int) -> int:
    key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(key)
    if value is None:
        value = max_len - prompt if chat else DEFAULT_COMPLETION_MAX_TOKENS
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, "use an integer >= 1")
    if prompt + value > max_len:
        raise RequestError(f"This model's maximum context length is {max_len} tokens. However, you requested "
                           f"{prompt + value} tokens ({prompt} in the prompt, {value} in the completion): "
                           f"reduce {key} or the prompt.", key)
    return int(value)


def _kv_mode(params: object, pd_role: bool, stream: bool) -> str:
    if params is None:
        return "local"
    _require(isinstance(params, dict), "kv_transfer_params", "must be an object")
    _require(pd_role, "kv_transfer_params", "this replica has no KV connector (role aggregated)")
    assert isinstance(params, dict)
    remote_decode, remote_prefill = bool(params.get("do_remote_decode")), bool(params.get("do_remote_prefill"))
    _require(not (remote_decode and remote_prefill), "kv_transfer_params",
             "do_remote_decode and do_remote_prefill exclude each other")
    if remote_decode:
        _require(not stream, "stream", "a prefill-only request (do_remote_decode) is answered without streaming")
        return "remote_decode"
    if remote_prefill:
        for name, kind in REMOTE_PREFILL_FIELDS.items():
            _require(isinstance(params.get(name), kind), f"kv_transfer_params.{name}",
                     "copy it from the prefill replica's kv_transfer_params")
        return "remote_prefill"
    return "local"


# ----- responses ----------------------------------------------------------------------------------------------
def token_text(index: int) -> str:
    """The text of output token ``index``; concatenated, the tokens read ``tok0 tok1 ...``."""
    return f"tok{index}" if index == 0 else f" tok{index}"


def answer_text(tokens: int) -> str:
    """The whole answer of ``tokens`` tokens."""
    return "".join(token_text(i) for i in range(tokens))


def new_id(chat: bool) -> str:
    """A response id in vLLM's style."""
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The ``usage`` object."""
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": None}


def full_response(request: GenerationRequest, response_id: str, model: str, tokens: int,
                  kv_transfer_params: dict[str, Any] | None) -> dict[str, Any]:
    """A non-streaming answer of ``tokens`` tokens."""
    text = answer_text(tokens)
    if request.chat:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "logprobs": None, "finish_reason": "length", "stop_reason": None}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None,
                  "prompt_logprobs": None}
    return {"id": response_id, "object": "chat.completion" if request.chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice],
            "usage": usage(request.prompt_tokens, tokens), "kv_transfer_params": kv_transfer_params}


def stream_chunk(request: GenerationRequest, response_id: str, model: str, delta: dict[str, Any] | None,
                 text: str, finish_reason: str | None) -> dict[str, Any]:
    """One SSE chunk: a chat ``delta`` (or ``text`` for completions), with ``finish_reason`` on the last."""
    if request.chat:
        choice: dict[str, Any] = {"index": 0, "delta": delta if delta is not None else {"content": text},
                                  "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    if finish_reason is not None:
        choice["stop_reason"] = None
    return {"id": response_id, "object": "chat.completion.chunk" if request.chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice]}


def usage_chunk(request: GenerationRequest, response_id: str, model: str, tokens: int) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, the usage."""
    return {"id": response_id, "object": "chat.completion.chunk" if request.chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [],
            "usage": usage(request.prompt_tokens, tokens)}
