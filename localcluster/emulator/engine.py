"""The emulator's engine: vLLM-style continuous batching in real (or virtual) time, timed by ``env.perf``.

Each iteration is formed the way vLLM's v1 scheduler forms it: running sequences first, in admission order
(a decoding sequence takes one token, a sequence still in its prompt takes a chunk of it), then waiting
requests first come first served while the token budget (``max_num_batched_tokens``), the batch cap
(``max_num_seqs``) and the KV cache allow. When a running sequence needs a KV block and none is free, the
newest running sequence is preempted (its blocks freed, recomputed later), and no waiting request is
admitted in that iteration. The iteration's duration comes from :class:`env.perf.PerfModel`; the engine
sleeps it (times ``time_scale``) on its :class:`Clock`, then every sequence whose tokens are all computed
samples one output token.

P/D disaggregation as vLLM's NixlConnector does it: a ``remote_decode`` request (prefill side) computes its
prompt, samples one token and finishes, its KV blocks held until the decode side has pulled them; a
``remote_prefill`` request (decode side) first gets blocks for its prompt, waits the KV-transfer time
(deferred, not running), then joins the batch computing its last prompt token, which samples the first
output token.

The engine is independent of ``env.sim`` (import-linter forbids it); it shares only the performance model.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

from disaggpilot.env.perf import PerfModel

# Fraction of KV blocks kept free when admitting a new request, so running sequences can grow (as the
# simulator and vLLM's v0 block manager do).
KV_WATERMARK = 0.01
KV_MODES = ("local", "remote_decode", "remote_prefill")
# How late (wall seconds) the event loop may wake the engine after an iteration's end and still have the
# next back-to-back iteration start at that end: a busy process must not slow the emulated GPU down, but a
# process stalled for longer is not made up for in a burst.
MAX_CATCH_UP_S = 0.05


class Clock(Protocol):
    """Time as the engine sees it (seconds)."""

    def now(self) -> float:
        """Current time (seconds)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at ``deadline`` (at once if it has passed)."""
        ...

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        """Return when ``event`` is set or at ``deadline`` (``None``: no deadline), whichever is first."""
        ...


class WallClock:
    """The monotonic wall clock."""

    def now(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``deadline``."""
        await asyncio.sleep(max(0.0, deadline - self.now()))

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        """Wait for ``event`` until ``deadline``."""
        timeout = None if deadline is None else max(0.0, deadline - self.now())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class VirtualClock:
    """Virtual time for tests: sleeping jumps the clock, so no test waits for emulated GPU time.

    Only the engine sleeps; everything else reacts to its tokens. Before each jump the clock gives the other
    tasks a few turns of the event loop, so they see each token at the time it was sampled.
    """

    TURNS = 5

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """Virtual seconds."""
        return self._now

    async def _let_others_run(self) -> None:
        for _ in range(self.TURNS):
            await asyncio.sleep(0)

    async def sleep_until(self, deadline: float) -> None:
        """Let the other tasks run, then jump to ``deadline``."""
        await self._let_others_run()
        self._now = max(self._now, deadline)

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        """Wait for ``event``; with a deadline, let the other tasks run, then jump to it unless it was set."""
        if deadline is None:
            await event.wait()
            return
        await self._let_others_run()
        if not event.is_set():
            self._now = max(self._now, deadline)


@dataclass(eq=False)
class EngineRequest:
    """One request inside the engine. Token counts are in tokens, times on the engine's clock (seconds)."""

    request_id: str
    prompt_tokens: int
    max_tokens: int
    kv_mode: str = "local"
    """``local``; ``remote_decode`` (prefill only, KV shipped to a decode replica); ``remote_prefill`` (KV
    arrives from a prefill replica)."""
    arrival: float = 0.0
    computed: int = 0
    """Tokens whose KV is in the cache (prompt first, then output)."""
    generated: int = 0
    blocks: int = 0
    preemptions: int = 0
    kv_ready_at: float | None = None
    """remote_prefill: when the KV transfer lands (set when its blocks are allocated)."""
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    tokens: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    """Indexes of output tokens as they are sampled, then ``None`` when the request has finished."""

    @property
    def total_tokens(self) -> int:
        """Tokens the sequence holds once caught up: prompt plus output so far."""
        return self.prompt_tokens + self.generated


class EngineObserver(Protocol):
    """What the engine reports (the /metrics module implements it). Durations in seconds."""

    def iteration(self, tokens: int, duration_s: float) -> None:
        """An iteration computed ``tokens`` tokens in ``duration_s`` (emulated, unscaled)."""
        ...

    def token(self, request: EngineRequest, now: float) -> None:
        """``request`` sampled an output token at ``now``."""
        ...

    def finished(self, request: EngineRequest) -> None:
        """``request`` finished (``finish_reason`` set)."""
        ...

    def preempted(self, request: EngineRequest) -> None:
        """``request`` lost its KV cache and will be recomputed."""
        ...

    def kv_transfer(self, request: EngineRequest, duration_s: float) -> None:
        """``request``'s KV cache started a transfer lasting ``duration_s`` (wall, scaled)."""
        ...


class NullObserver:
    """An observer that ignores everything."""

    def iteration(self, tokens: int, duration_s: float) -> None:
        """Ignore."""

    def token(self, request: EngineRequest, now: float) -> None:
        """Ignore."""

    def finished(self, request: EngineRequest) -> None:
        """Ignore."""

    def preempted(self, request: EngineRequest) -> None:
        """Ignore."""

    def kv_transfer(self, request: EngineRequest, duration_s: float) -> None:
        """Ignore."""


@dataclass(frozen=True)
class EngineLimits:
    """The scheduler's limits and the emulated hardware's capacities."""

    max_num_seqs: int
    """Batch cap (sequences)."""
    max_num_batched_tokens: int
    """Token budget per iteration (tokens)."""
    kv_cache_tokens: int
    """KV-cache capacity (tokens)."""
    block_size: int = 16
    """Tokens per KV block."""
    time_scale: float = 1.0
    """Factor on every emulated duration before sleeping it."""
    kv_link_gbps: float = 36.0
    """KV-transfer bandwidth per GPU (GB/s)."""
    kv_transfer_latency_s: float = 0.002
    """Fixed cost of a KV transfer (seconds)."""

    @property
    def kv_blocks(self) -> int:
        """KV-cache capacity in blocks."""
        return self.kv_cache_tokens // self.block_size


@dataclass
class _Step:
    scheduled: list[tuple[EngineRequest, int]]
    duration_s: float


class Engine:
    """One replica's continuous-batching engine; run :meth:`run` as a task, :meth:`submit` requests to it.

    Args:
        perf: the performance model of the emulated replica.
        limits: scheduler limits and capacities.
        clock: wall clock in production, :class:`VirtualClock` in tests.
        observer: receives every event (metrics).
    """

    def __init__(self, perf: PerfModel, limits: EngineLimits, clock: Clock | None = None,
                 observer: EngineObserver | None = None) -> None:
        self.perf, self.limits = perf, limits
        self.clock: Clock = clock or WallClock()
        self.observer: EngineObserver = observer or NullObserver()
        self.waiting: list[EngineRequest] = []
        self.running: list[EngineRequest] = []
        self.used_blocks = 0
        self.preemptions = 0
        self._held: list[tuple[float, EngineRequest]] = []  # (release time, request): KV awaiting a pull
        self._wake = asyncio.Event()
        self._busy_until = 0.0
        self._closed = False

    # ----- requests ----------------------------------------------------------------------------------
    def submit(self, request: EngineRequest) -> EngineRequest:
        """Queue ``request`` (arrival stamped now); its tokens appear on ``request.tokens``."""
        request.arrival = self.clock.now()
        self.waiting.append(request)
        self._wake.set()
        return request

    def abort(self, request: EngineRequest) -> None:
        """Drop ``request`` (its client went away); frees its KV cache."""
        if request.finish_reason is not None:
            return
        for queue in (self.waiting, self.running):
            if request in queue:
                queue.remove(request)
        self._free(request)
        self._finish(request, "abort", self.clock.now())

    @property
    def idle(self) -> bool:
        """Nothing queued or running (held KV awaiting a pull does not count)."""
        return not self.waiting and not self.running

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's ``kv_cache_usage_perc``, 0..1)."""
        return self.used_blocks / max(1, self.limits.kv_blocks)

    def transferring(self) -> tuple[int, int]:
        """Waiting remote-prefill requests: (KV transfer in progress, transfer done but not yet running)."""
        now = self.clock.now()
        ready = [r.kv_ready_at <= now for r in self.waiting
                 if r.kv_mode == "remote_prefill" and r.kv_ready_at is not None]
        return ready.count(False), ready.count(True)

    # ----- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Form, time and complete iterations until :meth:`close`."""
        idle = True
        while not self._closed:
            now = self.clock.now()
            self._release_held(now)
            step = self._schedule(now)
            if step is None:
                self._wake.clear()
                await self.clock.wait(self._wake, self._next_deadline(now))
                idle = True
                continue
            # Back to back, the next iteration starts when the previous one ended, however late the event
            # loop woke us (each late wake-up would otherwise stretch every iteration, and TPOT with it).
            start = now if idle else max(self._busy_until, now - MAX_CATCH_UP_S)
            idle = False
            self._busy_until = start + step.duration_s * self.limits.time_scale
            await self.clock.sleep_until(self._busy_until)
            self._complete(step, self.clock.now())

    def close(self) -> None:
        """Stop :meth:`run` at its next turn."""
        self._closed = True
        self._wake.set()

    def _next_deadline(self, now: float) -> float | None:
        """The next KV transfer landing or held KV being released, after ``now``."""
        times = [r.kv_ready_at for r in self.waiting if r.kv_ready_at is not None and r.kv_ready_at > now]
        times += [release for release, _ in self._held]
        return min(times) if times else None

    # ----- scheduling --------------------------------------------------------------------------------
    def _schedule(self, now: float) -> _Step | None:
        budget = self.limits.max_num_batched_tokens
        scheduled: list[tuple[EngineRequest, int]] = []
        preemptions = self.preemptions
        # Running sequences in admission order. A preemption victim is always the newest, so a sequence
        # scheduled in this iteration is never taken back, and one that had to preempt itself was the last.
        index = 0
        while index < len(self.running) and budget > 0:
            request = self.running[index]
            take = min(request.total_tokens - request.computed, budget)
            if not self._make_room(request, request.computed + take):
                break
            scheduled.append((request, take))
            budget -= take
            index += 1
        # vLLM admits nothing new in an iteration that preempted, unless the iteration would be empty.
        if self.preemptions == preemptions or not scheduled:
            self._admit(now, budget, scheduled)
        if not scheduled:
            return None
        return _Step(scheduled, self._step_time(scheduled))

    def _make_room(self, request: EngineRequest, tokens: int) -> bool:
        """Allocate blocks for ``tokens`` tokens, preempting the newest running sequences; False if
        ``request`` itself had to go."""
        while not self._allocate(request, tokens, watermark=False):
            victim = self.running[-1]
            self._preempt(victim)
            if victim is request:
                return False
        return True

    def _admit(self, now: float, budget: int, scheduled: list[tuple[EngineRequest, int]]) -> None:
        index = 0
        while index < len(self.waiting) and len(self.running) < self.limits.max_num_seqs and budget > 0:
            request = self.waiting[index]
            if request.kv_mode == "remote_prefill" and request.computed == 0:
                if request.kv_ready_at is None:
                    if not self._allocate(request, request.prompt_tokens, watermark=True):
                        break
                    self._start_transfer(request, now)
                if request.kv_ready_at is None or request.kv_ready_at > now:
                    index += 1  # vLLM skips a request whose KV is still in flight
                    continue
                request.computed = request.prompt_tokens - 1  # the last prompt token is computed here
            take = min(request.total_tokens - request.computed, budget)
            if not self._allocate(request, request.computed + take, watermark=True):
                break
            del self.waiting[index]
            self.running.append(request)
            if request.scheduled_at is None:
                request.scheduled_at = now
            scheduled.append((request, take))
            budget -= take

    def _start_transfer(self, request: EngineRequest, now: float) -> None:
        seconds = self.perf.kv_transfer_time(request.prompt_tokens, self.limits.kv_link_gbps,
                                             self.limits.kv_transfer_latency_s) * self.limits.time_scale
        request.kv_ready_at = now + seconds
        self.observer.kv_transfer(request, seconds)

    def _step_time(self, scheduled: list[tuple[EngineRequest, int]]) -> float:
        """Emulated duration of an iteration: one-token steps of sequences with context are decode tokens,
        everything else prompt chunks (with their causal attention pairs)."""
        prefill_tokens, pairs, batch, context = 0, 0.0, 0, 0
        for request, take in scheduled:
            if take == 1 and request.computed > 0:
                batch += 1
                context += request.computed
            else:
                prefill_tokens += take
                pairs += take * (request.computed + take / 2.0)
        return self.perf.mixed_step_time(prefill_tokens, pairs, batch, context)

    # ----- KV blocks ---------------------------------------------------------------------------------
    def _allocate(self, request: EngineRequest, tokens: int, watermark: bool) -> bool:
        need = math.ceil(tokens / self.limits.block_size) - request.blocks
        if need <= 0:
            return True
        total = self.limits.kv_blocks
        limit = total * (1.0 - KV_WATERMARK) if watermark else total
        # An empty cache takes anything that fits at all, as the simulator does, so nothing waits forever.
        if self.used_blocks + need > limit and not (self.used_blocks == 0 and need <= total):
            return False
        request.blocks += need
        self.used_blocks += need
        return True

    def _free(self, request: EngineRequest) -> None:
        self.used_blocks -= request.blocks
        request.blocks = 0

    def _preempt(self, request: EngineRequest) -> None:
        self.running.remove(request)
        self._free(request)
        request.computed = 0
        request.preemptions += 1
        self.preemptions += 1
        if request.kv_mode == "remote_prefill":
            request.kv_mode = "local"  # its transferred KV is gone: recompute the prompt here
        self.waiting.insert(0, request)
        self.observer.preempted(request)

    def _release_held(self, now: float) -> None:
        due = [item for item in self._held if item[0] <= now]
        for item in due:
            self._held.remove(item)
            self._free(item[1])

    # ----- completing an iteration -------------------------------------------------------------------
    def _complete(self, step: _Step, now: float) -> None:
        self.observer.iteration(sum(take for _, take in step.scheduled), step.duration_s)
        for request, take in step.scheduled:
            if request.finish_reason is not None:
                continue  # aborted during the iteration
            request.computed += take
            if request.computed >= request.total_tokens:
                self._sample(request, now)

    def _sample(self, request: EngineRequest, now: float) -> None:
        request.generated += 1
        if request.first_token_at is None:
            request.first_token_at = now
        self.observer.token(request, now)
        request.last_token_at = now
        request.tokens.put_nowait(request.generated - 1)
        if request.generated >= request.max_tokens or request.kv_mode == "remote_decode":
            self.running.remove(request)
            if request.kv_mode == "remote_decode":
                self._hold_for_transfer(request, now)
            else:
                self._free(request)
            self._finish(request, "length", now)

    def _hold_for_transfer(self, request: EngineRequest, now: float) -> None:
        """Keep the prompt's KV until the decode replica has pulled it (the same transfer time it pays)."""
        seconds = self.perf.kv_transfer_time(request.prompt_tokens, self.limits.kv_link_gbps,
                                             self.limits.kv_transfer_latency_s) * self.limits.time_scale
        self._held.append((now + seconds, request))

    def _finish(self, request: EngineRequest, reason: str, now: float) -> None:
        request.finish_reason = reason
        request.finished_at = now
        self.observer.finished(request)
        request.tokens.put_nowait(None)
