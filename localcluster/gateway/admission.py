"""Per-tenant admission: a cap on requests in flight and a token bucket on admitted tokens.

A request costs its prompt tokens plus its ``max_tokens``. The bucket refills at the tenant's rate up to
its burst; a request costing more than the burst is charged the burst (it passes when the bucket is full,
so an over-long request is never refused forever). A refusal carries the wait after which the same
request would pass (the concurrency cap cannot know it and says one second).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from disaggpilot.localcluster.gateway.config import TenantConfig
from disaggpilot.localcluster.gateway.errors import ClientRequestError

CONCURRENCY_RETRY_AFTER_S = 1.0
"""Retry-After sent when the concurrency cap refuses (seconds): a slot frees when any request finishes."""


@dataclass
class _Bucket:
    level: float
    updated_s: float


class TenantAdmission:
    """Admission state of every tenant.

    Args:
        tenants: the tenants and their limits.
        clock: monotonic time source (seconds); injected so tests step time.
    """

    def __init__(self, tenants: list[TenantConfig], clock: Callable[[], float]) -> None:
        self._tenants = {tenant.name: tenant for tenant in tenants}
        self._clock = clock
        self._in_flight = dict.fromkeys(self._tenants, 0)
        now = clock()
        self._buckets = {t.name: _Bucket(float(t.token_burst), now) for t in tenants}

    def in_flight(self, tenant: str) -> int:
        """Admitted requests of ``tenant`` not yet released."""
        return self._in_flight[tenant]

    def admit(self, tenant: str, tokens: int) -> None:
        """Take a concurrency slot and ``tokens`` from the bucket, or refuse.

        Raises:
            ClientRequestError: status 429 with ``retry_after_s`` when a limit refuses.
        """
        spec = self._tenants[tenant]
        if self._in_flight[tenant] >= spec.max_concurrency:
            raise ClientRequestError(429, f"tenant {tenant!r} has {spec.max_concurrency} requests in flight "
                                          "(its concurrency cap); retry later", None, CONCURRENCY_RETRY_AFTER_S)
        if spec.token_rate_per_s > 0:
            self._take_tokens(spec, tokens)
        self._in_flight[tenant] += 1

    def release(self, tenant: str) -> None:
        """Give back the concurrency slot of a finished (or failed) request."""
        self._in_flight[tenant] -= 1

    def _take_tokens(self, spec: TenantConfig, tokens: int) -> None:
        bucket = self._buckets[spec.name]
        now = self._clock()
        bucket.level = min(spec.token_burst, bucket.level + (now - bucket.updated_s) * spec.token_rate_per_s)
        bucket.updated_s = now
        cost = min(tokens, spec.token_burst)
        if bucket.level < cost:
            wait_s = (cost - bucket.level) / spec.token_rate_per_s
            raise ClientRequestError(429, f"tenant {spec.name!r} is over its token rate "
                                          f"({spec.token_rate_per_s:g} tokens/s); retry after {wait_s:.2f} s",
                                     None, wait_s)
        bucket.level -= cost


def retry_after_header(wait_s: float) -> str:
    """The ``Retry-After`` value: whole seconds (RFC 9110 delay-seconds), rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))
