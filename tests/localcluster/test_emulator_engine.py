"""The emulator's engine in virtual time: iteration times are env.perf's, vLLM's scheduling limits hold."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from disaggpilot.env.catalog import load_gpu, load_model
from disaggpilot.env.perf import PerfModel
from disaggpilot.localcluster.emulator.engine import Engine, EngineLimits, EngineRequest, NullObserver, VirtualClock


@pytest.fixture(scope="module")
def perf() -> PerfModel:
    return PerfModel(load_model("llama-3.1-70b"), load_gpu("h100-sxm"), 4)


@dataclass
class Recorder(NullObserver):
    """Keeps every iteration (tokens, emulated duration, running sequences) and preemption."""

    engine: Engine | None = None
    iterations: list[tuple[int, float, int]] = field(default_factory=list)
    preemptions: int = 0
    transfers: list[float] = field(default_factory=list)

    def iteration(self, tokens: int, duration_s: float) -> None:
        assert self.engine is not None
        self.iterations.append((tokens, duration_s, len(self.engine.running)))

    def preempted(self, request: EngineRequest) -> None:
        self.preemptions += 1

    def kv_transfer(self, request: EngineRequest, duration_s: float) -> None:
        self.transfers.append(duration_s)


def make_engine(perf: PerfModel, **limits: float) -> tuple[Engine, Recorder, VirtualClock]:
    settings = {"max_num_seqs": 256, "max_num_batched_tokens": 8192, "kv_cache_tokens": 1_000_000, **limits}
    clock, recorder = VirtualClock(), Recorder()
    engine = Engine(perf, EngineLimits(**settings), clock, recorder)  # type: ignore[arg-type]
    recorder.engine = engine
    return engine, recorder, clock


def run(engine: Engine, clock: VirtualClock, requests: list[EngineRequest]) -> dict[str, list[float]]:
    """Submit ``requests`` at virtual time 0 and return each one's token times."""

    async def collect(request: EngineRequest) -> list[float]:
        times = []
        while await request.tokens.get() is not None:
            times.append(clock.now())
        return times

    async def scenario() -> dict[str, list[float]]:
        task = asyncio.create_task(engine.run())
        for request in requests:
            engine.submit(request)
        times = await asyncio.wait_for(asyncio.gather(*(collect(r) for r in requests)), timeout=30)
        engine.close()
        await asyncio.wait_for(task, timeout=5)
        return {r.request_id: t for r, t in zip(requests, times, strict=True)}

    return asyncio.run(scenario())


def test_one_request_is_timed_by_the_performance_model(perf: PerfModel) -> None:
    engine, recorder, clock = make_engine(perf)
    times = run(engine, clock, [EngineRequest("a", prompt_tokens=1000, max_tokens=3)])["a"]
    prefill = perf.prefill_time(1000, 1000 * 500.0)
    decode = [perf.decode_step_time(1, 1000), perf.decode_step_time(1, 1001)]
    assert [d for _, d, _ in recorder.iterations] == pytest.approx([prefill, *decode])
    assert times == pytest.approx([prefill, prefill + decode[0], prefill + sum(decode)])
    assert engine.used_blocks == 0 and engine.idle


def test_prompts_are_chunked_under_the_token_budget(perf: PerfModel) -> None:
    engine, recorder, clock = make_engine(perf, max_num_batched_tokens=512)
    times = run(engine, clock, [EngineRequest("a", prompt_tokens=1200, max_tokens=2)])["a"]
    assert [tokens for tokens, _, _ in recorder.iterations] == [512, 512, 176, 1]
    chunks = [perf.prefill_time(512, 512 * 256.0), perf.prefill_time(512, 512 * (512 + 256.0)),
              perf.prefill_time(176, 176 * (1024 + 88.0))]
    assert times[0] == pytest.approx(sum(chunks))  # the first token comes with the last chunk


def test_batch_cap_and_budget_hold_and_every_request_gets_its_tokens(perf: PerfModel) -> None:
    engine, recorder, clock = make_engine(perf, max_num_seqs=3, max_num_batched_tokens=600)
    requests = [EngineRequest(f"r{i}", prompt_tokens=250, max_tokens=5 + i) for i in range(7)]
    times = run(engine, clock, requests)
    assert max(running for _, _, running in recorder.iterations) == 3
    assert max(tokens for tokens, _, _ in recorder.iterations) <= 600
    assert [len(times[r.request_id]) for r in requests] == [5 + i for i in range(7)]
    firsts = [times[r.request_id][0] for r in requests]
    assert firsts == sorted(firsts)  # first come, first served


def test_decode_steps_of_a_batch_cost_one_batched_step(perf: PerfModel) -> None:
    engine, recorder, clock = make_engine(perf)
    requests = [EngineRequest(f"r{i}", prompt_tokens=100, max_tokens=4) for i in range(4)]
    times = run(engine, clock, requests)
    assert recorder.iterations[0][0] == 400  # all four prompts in one iteration
    assert recorder.iterations[1][1] == pytest.approx(perf.decode_step_time(4, 400))
    ttft, tpot = times["r0"][0], (times["r0"][-1] - times["r0"][0]) / 3
    assert ttft == pytest.approx(perf.prefill_time(400, 4 * 100 * 50.0))
    assert perf.decode_step_time(4, 400) <= tpot <= perf.decode_step_time(4, 412)


def test_a_full_kv_cache_preempts_and_recomputes_without_losing_tokens(perf: PerfModel) -> None:
    engine, recorder, clock = make_engine(perf, kv_cache_tokens=96, block_size=16)
    requests = [EngineRequest(f"r{i}", prompt_tokens=16, max_tokens=40) for i in range(2)]
    times = run(engine, clock, requests)
    assert recorder.preemptions >= 1
    assert [len(times[r.request_id]) for r in requests] == [40, 40]
    assert engine.used_blocks == 0


def test_remote_prefill_waits_for_the_kv_transfer_then_decodes(perf: PerfModel) -> None:
    engine, recorder, clock = make_engine(perf, time_scale=0.5, kv_link_gbps=36.0, kv_transfer_latency_s=0.002)
    times = run(engine, clock, [EngineRequest("d", prompt_tokens=2000, max_tokens=2, kv_mode="remote_prefill")])
    transfer = perf.kv_transfer_time(2000, 36.0, 0.002) * 0.5
    assert recorder.transfers == pytest.approx([transfer])
    assert recorder.iterations[0][0] == 1  # only the last prompt token is computed here
    assert times["d"][0] == pytest.approx(transfer + perf.decode_step_time(1, 1999) * 0.5)


def test_remote_decode_answers_one_token_and_holds_the_kv_until_pulled(perf: PerfModel) -> None:
    engine, _, _ = make_engine(perf)
    request = EngineRequest("p", prompt_tokens=320, max_tokens=1, kv_mode="remote_decode")

    async def scenario() -> tuple[int, int]:
        task = asyncio.create_task(engine.run())
        engine.submit(request)
        assert await request.tokens.get() == 0
        assert await request.tokens.get() is None
        held = engine.used_blocks  # read in the same turn the answer ended
        await asyncio.sleep(0.05)  # the engine's idle wait jumps virtual time to the release
        released = engine.used_blocks
        engine.close()
        await asyncio.wait_for(task, 5)
        return held, released

    held, released = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert (held, released) == (20, 0)  # 320 tokens in 16-token blocks


def test_time_scale_shrinks_every_duration(perf: PerfModel) -> None:
    engine, _, clock = make_engine(perf, time_scale=0.1)
    times = run(engine, clock, [EngineRequest("a", prompt_tokens=500, max_tokens=2)])["a"]
    full = perf.prefill_time(500, 500 * 250.0) + perf.decode_step_time(1, 500)
    assert times[-1] == pytest.approx(0.1 * full)


def test_an_aborted_request_frees_its_kv_and_ends_its_stream(perf: PerfModel) -> None:
    engine, _, _ = make_engine(perf)
    request = EngineRequest("a", prompt_tokens=64, max_tokens=1000)

    async def scenario() -> list[int | None]:
        task = asyncio.create_task(engine.run())
        engine.submit(request)
        seen = [await asyncio.wait_for(request.tokens.get(), 5) for _ in range(3)]
        engine.abort(request)
        while (item := await asyncio.wait_for(request.tokens.get(), 5)) is not None:
            seen.append(item)
        engine.close()
        await asyncio.wait_for(task, 5)
        return seen

    seen = asyncio.run(scenario())
    assert seen[:3] == [0, 1, 2] and len(seen) < 1000
    assert request.finish_reason == "abort" and engine.used_blocks == 0
