"""The snapshots a daemon keeps: only the most recent ones, while ``len`` still counts every interval.

Policies read ``history[-1]`` and windows of the last few intervals (the headroom planner its demand
window); Dynamo's SLA planner also counts
intervals with ``len(history)`` to find its adjustment boundaries. :class:`History` serves both without
growing for ever: indices are absolute (0 is the first snapshot), and asking for one no longer kept raises
``IndexError`` naming the limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import overload

from disaggpilot.env.metrics import MetricsSnapshot


class History(Sequence[MetricsSnapshot]):
    """Every snapshot's position, the last ``keep`` snapshots' contents.

    Args:
        keep: how many recent snapshots to keep (snapshots, >= 1).
    """

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep!r} is invalid: keep at least one snapshot")
        self.keep = keep
        self._items: deque[MetricsSnapshot] = deque(maxlen=keep)
        self._total = 0

    def append(self, snapshot: MetricsSnapshot) -> None:
        """Add the latest snapshot, forgetting the oldest kept one when full."""
        self._items.append(snapshot)
        self._total += 1

    def __len__(self) -> int:
        """Snapshots seen so far, kept or not."""
        return self._total

    @overload
    def __getitem__(self, index: int) -> MetricsSnapshot: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[MetricsSnapshot]: ...

    def __getitem__(self, index: int | slice) -> MetricsSnapshot | Sequence[MetricsSnapshot]:
        """The snapshot at absolute position ``index`` (negative counts from the end), or a list for a slice."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._total))]
        position = index + self._total if index < 0 else index
        local = position - (self._total - len(self._items))
        if not 0 <= local < len(self._items):
            raise IndexError(f"snapshot {index} is not kept: only the last {self.keep} are "
                             "(raise controller.history_intervals)")
        return self._items[local]
