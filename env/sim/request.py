"""A request's state as it moves through the simulated cluster."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disaggpilot.env.sim.prefix import Chain


class Request:
    """One request. Plain slots, not a dataclass: the simulator touches these millions of times.

    Times are seconds from the episode start; lengths are tokens.
    """

    __slots__ = (
        "arrival", "blocks", "decode_join_iter", "epoch", "finish_iter", "first_token", "generated", "judged",
        "kv_reserved", "output", "prefilled", "priority", "prompt", "recompute", "replica_arrival", "rid", "tenant",
    )
    blocks: Chain
    """The prompt's cacheable KV blocks (env/sim/prefix.py); set only when prefixes are modelled."""

    def __init__(self, rid: int, tenant: int, arrival: float, prompt: int, output: int, priority: int) -> None:
        self.rid = rid
        self.tenant = tenant
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.priority = priority
        self.prefilled = 0
        """Prompt tokens computed so far by the current (prefill or aggregated) replica."""
        self.generated = 0
        """Output tokens produced so far."""
        self.first_token = math.nan
        """When the client received the first output token (NaN until known)."""
        self.replica_arrival = arrival
        """When the request reached its current replica's queue."""
        self.decode_join_iter = 0
        """Iteration index of the decode replica at which the request joined its running batch."""
        self.finish_iter = 0
        """Iteration index at which the request's last token is produced."""
        self.epoch = 0
        """Bumped when the request is preempted, invalidating stale heap entries."""
        self.recompute = 0
        """Tokens to recompute on readmission after a preemption (prompt plus output so far)."""
        self.kv_reserved = 0
        """KV tokens the decode replica reserved for this request before its transfer started."""
        self.judged = False
        """Counted as an SLO miss while still in flight (queued past its TTFT objective)."""

    @property
    def context(self) -> int:
        """Tokens this request holds in a KV cache while decoding."""
        return self.prompt + self.generated
