"""Errors of the gateway: the client's fault (permanent, answered 4xx) or a replica's (retryable elsewhere)."""

from __future__ import annotations

from disaggpilot.env.errors import EnvError, PermanentError, TemporaryError


class ClientRequestError(EnvError, PermanentError):
    """The request cannot be served as sent; answered with ``status`` and an OpenAI-style error naming ``param``.

    Args:
        status: HTTP status for the client (400, 401, 404, 429).
        message: what is wrong and how to fix it (never a key, never the body).
        param: the request field at fault, or ``None``.
        retry_after_s: for 429, when to come back (seconds); sent as ``Retry-After``.
        reason: the ``reason`` label it is counted under in the gateway's metrics; default: by status.
    """

    def __init__(self, status: int, message: str, param: str | None = None, retry_after_s: float | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s
        self.reason = reason or REASON_BY_STATUS.get(status, "invalid_request")


REASON_BY_STATUS = {400: "invalid_request", 401: "unauthorized", 404: "unknown_model", 413: "body_too_large",
                    429: "rate_limited"}
"""The metrics ``reason`` of a refusal when the check gives none."""
REFUSAL_REASONS: tuple[str, ...] = (*REASON_BY_STATUS.values(), "prompt_too_long", "invalid_token_ids",
                                    "upstream_rejected")
"""Every ``reason`` label of ``disaggpilot_gateway_requests_refused_total`` (a fixed set: bounded series)."""


class UpstreamError(EnvError, TemporaryError):
    """A replica refused, failed, timed out or died; the request is retried on another replica."""


class UpstreamRejectedError(EnvError, PermanentError):
    """A replica answered 4xx: the request itself is at fault, so its answer goes to the client unchanged.

    Args:
        status: the replica's HTTP status.
        body: the replica's answer (an OpenAI-style error JSON).
    """

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"replica answered {status}")
        self.status = status
        self.body = body


class NoReplicaError(EnvError, TemporaryError):
    """No ready replica of a needed role appeared in time; the client gets 503 with Retry-After."""
