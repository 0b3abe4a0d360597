"""Calls to one replica: a JSON answer, or a stream of server-sent events, with failures sorted by type.

Connection failures, timeouts, 5xx, 429 and streams cut short raise :class:`UpstreamError` (retry on
another replica); any other 4xx raises :class:`UpstreamRejectedError` (the request is at fault).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from disaggpilot.localcluster.gateway.errors import UpstreamError, UpstreamRejectedError
from disaggpilot.localcluster.gateway.routing import Replica

DONE = "[DONE]"
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


async def post_json(session: aiohttp.ClientSession, replica: Replica, path: str, body: dict[str, Any],
                    ) -> dict[str, Any]:
    """POST ``body`` to ``replica`` and return its JSON answer."""
    try:
        async with session.post(replica.url + path, json=body) as response:
            await _check_status(response, replica)
            answer = await response.json(content_type=None)
    except TRANSPORT_ERRORS as error:
        raise UpstreamError(f"{replica.name}: {error.__class__.__name__}: {error}") from error
    if not isinstance(answer, dict):
        raise UpstreamError(f"{replica.name}: answer is not a JSON object")
    return answer


@asynccontextmanager
async def open_events(session: aiohttp.ClientSession, replica: Replica, path: str, body: dict[str, Any],
                      ) -> AsyncIterator[AsyncIterator[dict[str, Any] | str]]:
    """POST ``body`` and yield the answer's events: parsed JSON objects, then the string ``[DONE]``."""
    try:
        async with session.post(replica.url + path, json=body) as response:
            await _check_status(response, replica)
            yield _events(response, replica)
    except TRANSPORT_ERRORS as error:
        raise UpstreamError(f"{replica.name}: {error.__class__.__name__}: {error}") from error


async def _events(response: aiohttp.ClientResponse, replica: Replica) -> AsyncIterator[dict[str, Any] | str]:
    data: list[str] = []
    async for raw_line in response.content:
        line = raw_line.decode("utf-8").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line == "" and data:
            payload, data = "\n".join(data), []
            if payload == DONE:
                yield DONE
                return
            yield _decode_event(payload, replica)
    raise UpstreamError(f"{replica.name}: the stream ended without [DONE]")


def _decode_event(payload: str, replica: Replica) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        raise UpstreamError(f"{replica.name}: a streamed event is not JSON") from None
    if not isinstance(event, dict) or "error" in event:
        raise UpstreamError(f"{replica.name}: the stream carried an error")
    return event


async def _check_status(response: aiohttp.ClientResponse, replica: Replica) -> None:
    if response.status < 400:
        return
    body = await response.read()
    if response.status in (408, 429) or response.status >= 500:
        raise UpstreamError(f"{replica.name}: answered {response.status}")
    raise UpstreamRejectedError(response.status, body)
