"""One vLLM-like engine replica with continuous batching, at iteration granularity.

The replica runs *segments*: a run of iterations over which nothing but the batch's context changes. A
segment whose first iteration computes prompt tokens (a prefill chunk, or the recomputation of a preempted
request) is one iteration long; a pure decode segment lasts until the next sequence finishes or the KV
cache would overflow. Step times in a decode segment form an arithmetic progression (the performance
model is linear in context), so the segment's end is computed in closed form and every iteration inside
it is still accounted for: tokens, inter-token latencies, KV growth. When work arrives mid-segment the
segment is cut at the next iteration boundary, where vLLM's scheduler would see it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from disaggpilot.env.metrics import tpot_s
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.sim.queues import RequestQueue, make_queue
from disaggpilot.env.sim.recorder import PoolStats, observe_arithmetic
from disaggpilot.env.sim.request import Request

# vLLM keeps 1% of KV blocks free when admitting (its watermark) so running sequences can grow.
KV_WATERMARK = 0.01


class Host(Protocol):
    """What a replica needs from the simulator around it."""

    now: float
    events: list[tuple[float, int, Any, Any]]
    """The simulator's event heap: (time, sequence, callback, argument)."""
    sequence: Iterator[int]
    """Tie-breaker for events at equal times, so order is deterministic."""

    def schedule(self, time: float, callback: Callable[[Any], None], argument: Any) -> None: ...

    def prefill_done(self, replica: Replica, request: Request, time: float) -> None: ...

    def first_token(self, request: Request, time: float) -> None: ...

    def finished(self, request: Request, time: float) -> None: ...

    def rejected(self, request: Request, time: float) -> None: ...

    def replica_idle(self, replica: Replica, time: float) -> None: ...

    replica_class: type[Replica]
    """What pools build: ``Replica``, or a subclass with a prefix cache when prompts share prefixes."""

    def kv_freed(self, replica: Replica, time: float) -> None: ...


class Replica:
    """An engine replica in role ``prefill``, ``decode`` or ``aggregated``."""

    def __init__(self, index: int, role: str, perf: PerfModel, stats: PoolStats, host: Host,
                 max_num_batched_tokens: int, max_num_seqs: int, scheduling: str, timeout_s: float) -> None:
        self.index, self.role, self.perf, self.stats, self.host = index, role, perf, stats, host
        self.does_prefill, self.does_decode = role != "decode", role != "prefill"
        self.max_num_batched_tokens, self.max_num_seqs = max_num_batched_tokens, max_num_seqs
        self.timeout_s = timeout_s
        self.kv_capacity = perf.kv_capacity_tokens
        # Floored: it is only compared with whole token counts (``int > float`` is exact in Python, so
        # ``k > limit`` iff ``k > floor(limit)``), and an int-int comparison is the interpreter's fast path.
        self.kv_admit_limit = math.floor(self.kv_capacity * (1.0 - KV_WATERMARK))
        self.kv_used = 0
        self.prefill_queue: RequestQueue = make_queue(scheduling)
        self.decode_queue: RequestQueue = make_queue(scheduling)
        self.prefilling: list[Request] = []
        self.running: list[tuple[int, int, int, Request]] = []  # (finish_iter, rid, epoch, request)
        self.admitted: list[tuple[Request, int]] = []  # admission order, for preemption (lazy)
        self.batch = self.iter = self.ctx = 0
        self.queued_tokens = 0  # prompt tokens not yet computed (prefill) or waiting to join (decode)
        self.awaiting_transfer: deque[tuple[Request, Replica]] = deque()  # held for KV room (decode)
        self.seen_load = 0.0  # load() at the router's last scrape (cluster.routing_staleness_s)
        self.anchor_t = 0.0
        self.seg_n, self.seg_a, self.seg_slope, self.seg_extra, self.seg_new = 0, 0.0, 0.0, 0.0, 0
        self.seg_chunk: list[tuple[Request, int]] = []
        self.busy = False
        self.version = 0
        self.draining = False
        self.ready_at = 0.0
        self.billed_from = 0.0
        # Hot-path references, bound once (a bound method per event push measurably costs; the host's
        # heap and counter are created before any replica and never replaced during an episode).
        self._events, self._sequence, self._on_event_cb = host.events, host.sequence, self._on_event
        self._kv_read_s_per_token = perf.kv_read_s_per_token

    # ----- load and state ------------------------------------------------------------------------------
    def load(self) -> float:
        """Outstanding tokens, the router's load signal."""
        return self.queued_tokens + (self.kv_used if self.does_decode else 0)

    def seen(self) -> float:
        """The load the router saw at its last scrape (``cluster.routing_staleness_s`` > 0)."""
        return self.seen_load

    def is_empty(self) -> bool:
        """No request queued, running or holding KV cache here."""
        return not (self.busy or self.kv_used or len(self.prefill_queue) or len(self.decode_queue)
                    or self.awaiting_transfer)

    def waiting(self) -> int:
        """Requests queued and not yet running (vLLM's ``num_requests_waiting``; a transfer held for KV room
        is a request vLLM's scheduler has but cannot allocate yet)."""
        return len(self.prefill_queue) + len(self.decode_queue) + len(self.awaiting_transfer)

    def running_count(self) -> int:
        """Requests being computed (vLLM's ``num_requests_running``)."""
        return self.batch + len(self.prefilling)

    def set_knobs(self, max_num_batched_tokens: int | None, max_num_seqs: int | None) -> None:
        """Change batch limits; they apply from the next scheduling decision."""
        if max_num_batched_tokens is not None:
            self.max_num_batched_tokens = max_num_batched_tokens
        if max_num_seqs is not None:
            self.max_num_seqs = max_num_seqs

    # ----- arrivals ------------------------------------------------------------------------------------
    def submit_prefill(self, request: Request, now: float) -> None:
        """A request arrives for its prompt to be computed here."""
        request.replica_arrival = now
        request.prefilled = 0
        self.prefill_queue.push(request)
        self.queued_tokens += request.prompt
        self._wake(now, cut=True)

    def submit_decode(self, request: Request, now: float) -> None:
        """A request whose KV cache has arrived joins the decode queue."""
        request.replica_arrival = now
        self.decode_queue.push(request)
        self.queued_tokens += request.prompt + request.generated  # request.context, inlined (hot path)
        self._wake(now, cut=self.batch < self.max_num_seqs)

    def reserve_kv(self, request: Request) -> bool:
        """Reserve KV room for a request whose transfer is about to start (decode role); False if full.

        Admission's rule: up to the watermark, but an empty replica takes any request that fits at all.
        """
        if self.kv_used + request.prompt > self.kv_admit_limit and (self.kv_used or self.batch):
            return False
        self.kv_used += request.prompt
        request.kv_reserved = request.prompt
        return True

    def hold_transfer(self, request: Request, prefill: Replica) -> None:
        """Hold a transfer back until KV room frees; its tokens count as this replica's load meanwhile."""
        self.awaiting_transfer.append((request, prefill))
        self.queued_tokens += request.prompt

    def release_held(self) -> tuple[Request, Replica]:
        """The oldest held transfer, now reserved and starting."""
        request, prefill = self.awaiting_transfer.popleft()
        self.queued_tokens -= request.prompt
        return request, prefill

    def _wake(self, now: float, cut: bool) -> None:
        if not self.busy:
            self._plan(now)
        elif cut and self.seg_n > 1:
            # End the segment at the first iteration boundary after ``now``.
            done = self._iterations_done(now - self.anchor_t)
            if done + 1 < self.seg_n:
                self.seg_n = done + 1
                self._schedule_segment_end()

    # ----- segment arithmetic --------------------------------------------------------------------------
    def _segment_time(self, n: int) -> float:
        return self.seg_extra + n * self.seg_a + self.seg_slope * n * (n - 1) / 2.0

    def _iterations_done(self, elapsed: float) -> int:
        remaining = elapsed - self.seg_extra
        if remaining < self.seg_a:
            return 0
        a, s = self.seg_a, self.seg_slope
        if s <= 0.0:
            n = math.floor(remaining / a + 1e-12)
        else:
            b = a - s / 2.0
            n = math.floor((-b + math.sqrt(b * b + 2.0 * s * remaining)) / s + 1e-12)
        while n > 0 and self._segment_time(n) > elapsed:
            n -= 1
        return n if n < self.seg_n else self.seg_n

    def _schedule_segment_end(self) -> None:
        self.version += 1
        n = self.seg_n
        end = self.anchor_t + self.seg_extra + n * self.seg_a + self.seg_slope * n * (n - 1) / 2.0
        heapq.heappush(self._events, (end, next(self._sequence), self._on_event_cb, self.version))

    def checkpoint(self, now: float) -> None:
        """Account for the iterations of the current segment completed by ``now``, keeping its end."""
        if not self.busy or self.seg_n <= 1:
            return
        done = self._iterations_done(now - self.anchor_t)
        if 0 < done < self.seg_n:
            end = self.anchor_t + self._segment_time(done)
            self.seg_n -= done
            self._advance(done, end)
            self.seg_a = self.perf.decode_step_time(self.batch, self.ctx)

    # ----- the event loop ------------------------------------------------------------------------------
    def _on_event(self, version: int) -> None:
        if version != self.version:
            return
        now = self.host.now
        self._advance(self.seg_n, now)
        running = self.running
        finished = running and running[0][0] <= self.iter
        if finished:
            self._finish_sequences(now)
        self._plan(now)
        if finished and self.awaiting_transfer:
            # After _plan, so requests already here (preempted ones) get the freed room first.
            self.host.kv_freed(self, now)

    def _advance(self, n: int, end: float) -> None:
        batch = self.batch
        if batch:
            stats = self.stats
            if self.seg_extra or self.seg_new:
                observe_arithmetic(stats.itl, self.seg_extra + self.seg_a, 0.0, 1, batch - self.seg_new)
                observe_arithmetic(stats.itl, self.seg_a + self.seg_slope, self.seg_slope, n - 1, batch)
            else:
                observe_arithmetic(stats.itl, self.seg_a, self.seg_slope, n, batch)
            stats.generation_tokens += batch * n
            self.iter += n
            self.ctx += batch * n
            self.kv_used += batch * n
        self.anchor_t = end
        self.seg_extra, self.seg_new = 0.0, 0
        if self.seg_chunk:
            chunk, self.seg_chunk = self.seg_chunk, []
            self._complete_chunk(chunk, end)

    def _complete_chunk(self, chunk: list[tuple[Request, int]], now: float) -> None:
        for request, tokens in chunk:
            request.prefilled += tokens
            self.queued_tokens -= tokens
            self.stats.prompt_tokens += tokens
            if request.prefilled < (request.recompute or request.prompt):
                continue
            self.prefilling.remove(request)
            if request.recompute:
                self._recomputed(request)
            else:
                self._prompt_computed(request, now)

    def _prompt_computed(self, request: Request, now: float) -> None:
        stats = self.stats
        waited = now - request.replica_arrival
        stats.ttft.observe(waited)
        if self.role == "prefill":
            stats.generation_tokens += 1.0
            stats.success += 1.0
            stats.e2e.observe(waited)
            self.host.prefill_done(self, request, now)
            return
        # Aggregated: the prefill's last iteration samples the first output token.
        request.generated = 1
        stats.generation_tokens += 1.0
        self.host.first_token(request, now)
        self.kv_used -= request.prompt  # re-added as running context
        self._join(request)

    def _recomputed(self, request: Request) -> None:
        # Like a prefill, the recomputation's last iteration samples the next output token.
        self.kv_used -= request.context
        request.recompute = 0
        request.generated += 1
        self.stats.generation_tokens += 1.0
        self._join(request)

    def release_kv(self, request: Request, now: float) -> None:
        """The KV cache of a computed prompt has been shipped; free it (prefill role)."""
        self.kv_used -= request.prompt
        if not self.busy and (len(self.prefill_queue) or self.draining):
            self._plan(now)

    def _finish_sequences(self, now: float) -> None:
        running, stats = self.running, self.stats
        while running and running[0][0] <= self.iter:
            _, _, epoch, request = heapq.heappop(running)
            if epoch != request.epoch:
                continue
            request.generated = request.output
            self.batch -= 1
            self.ctx -= request.prompt + request.output
            self.kv_used -= request.prompt + request.output
            stats.success += 1.0
            stats.e2e.observe(now - request.replica_arrival)
            if request.output > 1:
                stats.tpot.observe(tpot_s(request.first_token, now, request.output))
            request.epoch += 1
            self.host.finished(request, now)

    # ----- scheduling ----------------------------------------------------------------------------------
    def _plan(self, now: float) -> None:
        joiners = self._admit_decode(now) if self.decode_queue else None
        chunk_tokens, pairs = self._build_chunk(now) if self.does_prefill or self.prefilling else (0, 0.0)
        batch = self.batch
        if batch and self.kv_used + batch > self.kv_capacity:
            self._preempt_for_growth()
            batch = self.batch
        if not self.seg_chunk and not batch:
            self.busy = False
            if self.draining and self.is_empty():
                self.host.replica_idle(self, now)
            return
        self.busy = True
        self.anchor_t = now
        self._start_segment(batch, chunk_tokens, pairs)
        # _schedule_segment_end, inlined: this is the hottest path, and the call measurably costs ~10%.
        self.version += 1
        n = self.seg_n
        end = now + self.seg_extra + n * self.seg_a + self.seg_slope * n * (n - 1) / 2.0
        heapq.heappush(self._events, (end, next(self._sequence), self._on_event_cb, self.version))
        if joiners:
            self._first_tokens(joiners, now + self.seg_extra + self.seg_a)

    def _first_tokens(self, joiners: list[Request], time: float) -> None:
        self.seg_new = len(joiners)
        ttft, host = self.stats.ttft, self.host
        for request in joiners:
            request.first_token = time
            ttft.observe(time - request.replica_arrival)
            host.first_token(request, time)

    def _start_segment(self, batch: int, chunk_tokens: int, pairs: float) -> None:
        perf = self.perf
        if batch:
            per_token = self._kv_read_s_per_token
            self.seg_a = perf.decode_base_s(batch) + per_token * self.ctx
            self.seg_slope = per_token * batch
        else:
            self.seg_a = self.seg_slope = 0.0
        if self.seg_chunk:
            step = perf.mixed_step_time(chunk_tokens, pairs, batch, self.ctx) if batch else \
                perf.prefill_time(chunk_tokens, pairs)
            self.seg_extra = step - self.seg_a
            self.seg_n = 1
            return
        until_finish = self.running[0][0] - self.iter
        until_full = (self.kv_capacity - self.kv_used) // batch  # ints: token counts are whole
        # max(1, min(until_finish, until_full)) without the builtins' argument handling (hot path).
        n = until_finish if until_finish < until_full else until_full
        self.seg_n = n if n > 1 else 1

    def _build_chunk(self, now: float) -> tuple[int, float]:
        budget = self.max_num_batched_tokens - self.batch
        tokens, pairs, chunk = 0, 0.0, self.seg_chunk
        for request in self.prefilling:
            if budget <= 0:
                break
            left = (request.recompute or request.prompt) - request.prefilled
            take = left if left < budget else budget
            chunk.append((request, take))
            pairs += take * (request.prefilled + take / 2.0)
            tokens += take
            budget -= take
        while budget > 0 and self.does_prefill and self.prefill_queue and self._admit_prefill(now):
            request = self.prefilling[-1]
            take = request.prompt if request.prompt < budget else budget
            chunk.append((request, take))
            pairs += take * take / 2.0
            tokens += take
            budget -= take
        return tokens, pairs

    def _admit_prefill(self, now: float) -> bool:
        queue = self.prefill_queue
        while queue and now - queue.peek().arrival > self.timeout_s:
            request = queue.pop()
            self.queued_tokens -= request.prompt
            self.host.rejected(request, now)
        if not queue or len(self.prefilling) + self.batch >= self.max_num_seqs:
            return False
        request = queue.peek()
        if self.kv_used + request.prompt > self.kv_admit_limit and (self.kv_used or self.batch):
            return False
        queue.pop()
        self.kv_used += request.prompt
        self.prefilling.append(request)
        self.stats.queue.observe(now - request.replica_arrival)
        return True

    def _admit_decode(self, now: float) -> list[Request]:
        """Move queued requests into the running batch while the batch cap and KV cache allow."""
        queue, joiners = self.decode_queue, []
        while queue and self.batch + len(self.prefilling) < self.max_num_seqs:
            request = queue.peek()
            need = request.prompt + request.generated  # request.context, inlined (hot path)
            reserved = request.kv_reserved
            # A reserved request's blocks are already allocated (vLLM's P/D connector): only the batch cap holds it.
            if not reserved and self.kv_used + need > self.kv_admit_limit and (self.batch or self.kv_used):
                break
            queue.pop()
            self.queued_tokens -= need
            if reserved:  # the blocks were allocated before the transfer: they become the running context
                self.kv_used -= reserved
                request.kv_reserved = 0
            if request.recompute:
                self._readmit(request)
                continue
            self.stats.queue.observe(now - request.replica_arrival)
            self._join(request)
            joiners.append(request)
        return joiners

    def _join(self, request: Request) -> None:
        it = self.iter
        request.decode_join_iter = it
        request.finish_iter = it + request.output - request.generated
        context = request.prompt + request.generated
        self.batch += 1
        self.ctx += context
        self.kv_used += context
        heapq.heappush(self.running, (request.finish_iter, request.rid, request.epoch, request))
        admitted = self.admitted
        admitted.append((request, request.epoch))
        if len(admitted) > 4 * self.batch + 64:
            self.admitted = [(r, e) for r, e in admitted if r.epoch == e]

    def _readmit(self, request: Request) -> None:
        """A preempted request comes back: recompute its prompt and output so far, then continue."""
        request.prefilled = 0
        self.prefilling.append(request)
        self.kv_used += request.context
        self.queued_tokens += request.recompute

    def _preempt_for_growth(self) -> None:
        while self.batch and self.kv_used + self.batch > self.kv_capacity:
            request, epoch = self.admitted.pop()
            if epoch != request.epoch:
                continue
            generated = request.generated + self.iter - request.decode_join_iter
            request.epoch += 1
            self.batch -= 1
            self.ctx -= request.prompt + generated
            self.kv_used -= request.prompt + generated
            request.generated = generated
            request.recompute = request.prompt + generated
            self.decode_queue.push_front(request)
            self.queued_tokens += request.context
            self.stats.preemptions += 1.0
