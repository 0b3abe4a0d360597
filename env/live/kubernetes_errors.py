"""Errors of the Kubernetes actuator, and how an API server's answer maps onto them.

The controller acts on the type (``env.errors``): a :class:`KubernetesTemporaryError` (409 conflict, 429
throttling, 5xx, a timeout, a refused connection) is retried after ``delay_s``, honouring the server's
``Retry-After``; a :class:`KubernetesPermanentError` (401/403 forbidden, 404 missing workload, 400/422 an
invalid patch) is not, and its message names the workload and what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from disaggpilot.env.errors import EnvError, PermanentError, TemporaryError

RETRYABLE_STATUSES: frozenset[int] = frozenset({409, 429, 500, 502, 503, 504})
"""HTTP statuses that may pass on their own: a write conflict, throttling, an unavailable API server."""
DEFAULT_RETRY_DELAY_S = 1.0
"""Wait suggested for a retryable answer without ``Retry-After`` (seconds)."""
RBAC_HINT = "grant the controller's service account get/patch on it (deploy/controller/role.yaml)"


class KubernetesTemporaryError(EnvError, TemporaryError):
    """The API server could not take the change now; retrying after ``delay_s`` may succeed."""


class KubernetesPermanentError(EnvError, PermanentError):
    """The API server refused the change for good; the message says what to fix."""


class WorkloadNotFoundError(KubernetesPermanentError):
    """The configured workload (or its container, or its DGD component) does not exist."""


class ForbiddenError(KubernetesPermanentError):
    """The service account may not read or patch the workload (401/403)."""


class InvalidPatchError(KubernetesPermanentError):
    """The API server rejected the patch as invalid (400/422), or the workload cannot be patched safely."""


def retry_after_s(headers: Mapping[str, str] | None) -> float:
    """The server's ``Retry-After`` in seconds, or :data:`DEFAULT_RETRY_DELAY_S` when absent or a date."""
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:  # an HTTP date: rare from an API server; the default is a fine wait
                return DEFAULT_RETRY_DELAY_S
    return DEFAULT_RETRY_DELAY_S


def from_api_status(status: int, reason: str, headers: Mapping[str, str] | None, what: str,
                    config_key: str) -> Exception:
    """The error for an API server's answer ``status`` to a request about ``what`` (e.g. ``Deployment
    llm/prefill``), configured under ``config_key``."""
    answer = f"{status} {reason}".strip()
    if status in RETRYABLE_STATUSES:
        return KubernetesTemporaryError(f"{what}: the API server answered {answer}; retrying",
                                        retry_after_s(headers))
    if status in (401, 403):
        return ForbiddenError(f"{what}: the API server answered {answer}: {RBAC_HINT}")
    if status == 404:
        return WorkloadNotFoundError(f"{what} not found (404): create it, or fix {config_key} "
                                     "(kind, name, namespace)")
    if status in (400, 422):
        return InvalidPatchError(f"{what}: the API server rejected the patch ({answer}): check the workload's "
                                 f"spec and {config_key}")
    return KubernetesPermanentError(f"{what}: unexpected answer {answer} from the API server")


def from_exception(error: Exception, what: str, config_key: str) -> Exception:
    """Map any failure of a client call about ``what`` onto this module's errors.

    An ``ApiException`` (it carries ``status``) maps through :func:`from_api_status`; a timeout or a failed
    connection (``urllib3`` errors, ``OSError``) is retryable; anything else is returned unchanged.
    """
    status = getattr(error, "status", None)
    if isinstance(status, int) and status > 0:
        headers: Any = getattr(error, "headers", None)
        return from_api_status(status, str(getattr(error, "reason", "") or ""),
                               headers if isinstance(headers, Mapping) else None, what, config_key)
    if isinstance(status, int):  # the client's own failure before any answer: TLS set-up, a bad host
        return KubernetesPermanentError(f"{what}: cannot talk to the API server ({getattr(error, 'reason', '')}): "
                                        "check the kubeconfig or the pod's service account")
    if _is_transport_error(error):
        return KubernetesTemporaryError(f"{what}: no answer from the API server ({type(error).__name__}); "
                                        "retrying", DEFAULT_RETRY_DELAY_S)
    return error


def _is_transport_error(error: BaseException) -> bool:
    import urllib3.exceptions  # the kubernetes client's transport; imported here to keep this module light

    return isinstance(error, OSError | TimeoutError | urllib3.exceptions.HTTPError)
