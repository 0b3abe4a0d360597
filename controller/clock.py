"""Time for the controller loop, injected: the wall clock in production, a virtual clock in tests.

Both count seconds from their own start. ``WallClock(speedup)`` runs ``speedup`` times faster than real
time (for demos on the simulator), and its ``sleep`` wakes at once when ``interrupt`` is called (SIGTERM).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Where the loop reads the time and waits."""

    def now(self) -> float:
        """Seconds since an arbitrary fixed origin (monotonic)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (seconds of this clock)."""
        ...


class WallClock:
    """Monotonic real time, optionally sped up.

    Args:
        speedup: clock seconds per real second (1 in production; e.g. 30 makes a 30 s interval last 1 s).
    """

    def __init__(self, speedup: float = 1.0) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup={speedup!r} is invalid: use a positive factor")
        self.speedup = speedup
        self._origin = time.monotonic()
        self._wake = threading.Event()

    def now(self) -> float:
        """Clock seconds since construction."""
        return (time.monotonic() - self._origin) * self.speedup

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of clock time, or less if :meth:`interrupt` is called."""
        if seconds > 0:
            self._wake.wait(seconds / self.speedup)

    def interrupt(self) -> None:
        """Wake every current and future ``sleep`` at once (used on shutdown)."""
        self._wake.set()


class VirtualClock:
    """Time that moves only when slept: tests run the loop for hours in microseconds.

    Args:
        start_s: the initial time (seconds).
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self.time_s = start_s
        self.sleeps: list[float] = []
        """Every wait asked for, in order (seconds)."""

    def now(self) -> float:
        """The current virtual time (seconds)."""
        return self.time_s

    def sleep(self, seconds: float) -> None:
        """Advance the time by ``seconds`` (negative waits count as 0) without waiting."""
        self.sleeps.append(seconds)
        self.time_s += max(0.0, seconds)
