"""Replica wait queues: FCFS, or by tenant priority (FCFS within a priority)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from disaggpilot.env.sim.request import Request


class RequestQueue(Protocol):
    """The operations a replica needs of its wait queue."""

    def push(self, request: Request) -> None:
        """Enqueue at the back (of its priority class)."""
        ...

    def push_front(self, request: Request) -> None:
        """Enqueue at the front (a preempted request goes back first, as in vLLM)."""
        ...

    def peek(self) -> Request:
        """The request that would be popped next."""
        ...

    def pop(self) -> Request:
        """Remove and return the next request."""
        ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Request]: ...


class FcfsQueue(deque[Request]):
    """First come, first served (a deque, so ``len`` and pops stay in C)."""

    def push(self, request: Request) -> None:
        self.append(request)

    def push_front(self, request: Request) -> None:
        self.appendleft(request)

    def peek(self) -> Request:
        return self[0]

    def pop(self) -> Request:  # type: ignore[override]
        return self.popleft()


class PriorityQueue:
    """Higher tenant priority first; earlier arrival first within a priority."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, Request]] = []

    def push(self, request: Request) -> None:
        heapq.heappush(self._heap, (-request.priority, request.arrival, request.rid, request))

    def push_front(self, request: Request) -> None:
        # Its early arrival time already puts it ahead of later arrivals of its priority.
        self.push(request)

    def peek(self) -> Request:
        return self._heap[0][3]

    def pop(self) -> Request:
        return heapq.heappop(self._heap)[3]

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return (entry[3] for entry in self._heap)


def make_queue(scheduling: str) -> RequestQueue:
    """A queue for the cluster's ``scheduling`` policy (``fcfs`` or ``priority``)."""
    return PriorityQueue() if scheduling == "priority" else FcfsQueue()
