"""The replica set as the gateway sees it, and least-loaded choice among the ready replicas of a role.

Load is what this gateway has sent and not yet seen finish: outstanding tokens first (prompt tokens on a
prefill replica, prompt + output tokens on a decode or aggregated one, like the simulator's
``least_tokens`` routing), then requests in flight, then how often the replica was picked, so ties rotate.
A replica that just failed is avoided for a cool-down unless it is the only one left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from disaggpilot.localcluster.gateway.config import ReplicaEndpoint

PD_MODE = "pd"
AGGREGATED_MODE = "aggregated"


@dataclass
class Replica:
    """One replica and this gateway's load on it.

    Attributes:
        endpoint: name, role, URL and lifecycle state (from discovery or the static list).
        in_flight: requests sent to it and not finished (requests).
        outstanding_tokens: tokens of those requests (tokens).
        picks: times it was chosen (tie-breaking rotation).
        cooling_until: clock time until which it is avoided after a failure (seconds).
        listed: whether the latest replica list still holds it (a removed one finishes what it has).
    """

    endpoint: ReplicaEndpoint
    in_flight: int = 0
    outstanding_tokens: int = 0
    picks: int = 0
    cooling_until: float = 0.0
    listed: bool = True

    @property
    def name(self) -> str:
        """The replica's unique name."""
        return self.endpoint.name

    @property
    def url(self) -> str:
        """The replica's base URL."""
        return self.endpoint.url


class ReplicaRegistry:
    """The current replica set; safe to use from one event loop (no locking needed).

    Args:
        clock: monotonic time source (seconds); injected so tests control cool-downs.
        failure_cooldown_s: how long a failed replica is avoided (seconds).
    """

    def __init__(self, clock: Callable[[], float], failure_cooldown_s: float) -> None:
        self._clock = clock
        self._cooldown_s = failure_cooldown_s
        self._replicas: dict[str, Replica] = {}

    def update(self, endpoints: Sequence[ReplicaEndpoint]) -> None:
        """Replace the listed set; replicas keep their load counters across updates (matched by name)."""
        names = {endpoint.name for endpoint in endpoints}
        for replica in self._replicas.values():
            replica.listed = replica.name in names
        for endpoint in endpoints:
            known = self._replicas.get(endpoint.name)
            if known is None:
                self._replicas[endpoint.name] = Replica(endpoint)
            else:
                known.endpoint = endpoint
        self._forget_idle_unlisted()

    def replicas(self) -> list[Replica]:
        """Every known replica (listed or still finishing requests), by name."""
        return [self._replicas[name] for name in sorted(self._replicas)]

    def ready(self, role: str) -> list[Replica]:
        """Listed replicas of ``role`` in state ``ready``."""
        return [r for r in self.replicas() if r.listed and r.endpoint.role == role and r.endpoint.state == "ready"]

    def mode(self) -> str | None:
        """``pd`` when a ready prefill and a ready decode replica exist, else ``aggregated`` if one is
        ready, else ``None`` (nothing can serve now)."""
        if self.ready("prefill") and self.ready("decode"):
            return PD_MODE
        return AGGREGATED_MODE if self.ready("aggregated") else None

    def pick(self, role: str, exclude: set[str] | frozenset[str] = frozenset()) -> Replica | None:
        """The least-loaded ready replica of ``role`` not in ``exclude``; cooling ones only as a last resort."""
        candidates = [r for r in self.ready(role) if r.name not in exclude]
        now = self._clock()
        healthy = [r for r in candidates if r.cooling_until <= now]
        pool = healthy or candidates
        if not pool:
            return None
        chosen = min(pool, key=lambda r: (r.outstanding_tokens, r.in_flight, r.picks, r.name))
        chosen.picks += 1
        return chosen

    def mark_failed(self, replica: Replica) -> None:
        """Avoid ``replica`` for the cool-down: it refused, failed or died under a request."""
        replica.cooling_until = self._clock() + self._cooldown_s

    @contextmanager
    def lease(self, replica: Replica, tokens: int) -> Iterator[Replica]:
        """Count a request of ``tokens`` tokens on ``replica`` while the ``with`` block runs."""
        replica.in_flight += 1
        replica.outstanding_tokens += tokens
        try:
            yield replica
        finally:
            replica.in_flight -= 1
            replica.outstanding_tokens -= tokens
            self._forget_idle_unlisted()

    def _forget_idle_unlisted(self) -> None:
        for name in [n for n, r in self._replicas.items() if not r.listed and r.in_flight == 0]:
            del self._replicas[name]
