"""``disaggpilot loadgen``: replay a scenario (or a trace) against an OpenAI-compatible endpoint.

The requests are the simulator's: :func:`env.workload.generate_requests` over the scenario's tenants, its
whole duration and the seed (what ``SimBackend.reset`` draws), cut at ``duration_s``. Each request is a
prompt of N words (the emulator counts one token per word; a real tokenizer counts differently) with
``max_tokens`` = its output length and ``ignore_eos``, streamed, sent with its tenant's API key at its
arrival time (open loop: a late send counts in its latency). TTFT (first streamed token) and TPOT are
measured here, on the client, from the scheduled arrival, and judged against each tenant's SLO by the
simulator's judgement (:func:`env.metrics.tpot_s`, :func:`env.metrics.judge`, as docs/metrics.md defines
it); the per-tenant table is :mod:`env.summary`'s, the one the simulator prints (cost columns are empty: a
client does not see what the cluster costs).

Outcomes: *finished* (every token and ``[DONE]`` arrived), *rejected* (the endpoint answered 429 or 503)
and *lost* (anything else: an error status, a broken stream, a timeout). Rejected and lost requests count
as rejected, and missed, in the table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from disaggpilot.env.metrics import (
    GW_ARRIVED,
    GW_E2E,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_GOODPUT_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_MET,
    GW_MISSED,
    GW_PROMPT_TOKENS,
    GW_REJECTED,
    GW_TPOT,
    GW_TTFT,
    MetricsSnapshot,
    TenantMetrics,
    judge,
    tpot_s,
)
from disaggpilot.env.structured import build
from disaggpilot.env.summary import RunSummary, summarize
from disaggpilot.env.workload import RequestBatch, TenantSpec, TraceSpec, generate_requests
from disaggpilot.localcluster.loadgen_config import LoadgenConfig, scenario_workload

log = logging.getLogger("disaggpilot.loadgen")
REJECTED_STATUSES = (429, 503)


@dataclass
class RequestResult:
    """One replayed request, latencies in scenario seconds (wall seconds / ``time_scale``).

    Attributes:
        index: position in the generated sequence.
        tenant: tenant name.
        arrival_s: scheduled arrival (scenario seconds from the start).
        prompt_tokens: prompt length sent (words).
        output_tokens: ``max_tokens`` asked for.
        status: HTTP status (0 when no answer came).
        received_tokens: output tokens received (``usage`` when sent, else text chunks).
        ttft_s: scheduled arrival to first token (NaN without one).
        e2e_s: scheduled arrival to the end of the answer (NaN when it never ended).
        outcome: ``finished``, ``rejected`` or ``lost``.
        error: what went wrong, for a lost request.
    """

    index: int
    tenant: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    status: int = 0
    received_tokens: int = 0
    ttft_s: float = math.nan
    e2e_s: float = math.nan
    outcome: str = "lost"
    error: str = ""


@dataclass
class LoadgenReport:
    """A replay's results: every request, the per-tenant summary, and how well the schedule was kept."""

    results: list[RequestResult]
    summary: RunSummary
    wall_s: float
    max_send_lag_s: float

    def counts(self) -> dict[str, int]:
        """Requests per outcome."""
        outcomes = [r.outcome for r in self.results]
        return {name: outcomes.count(name) for name in ("finished", "rejected", "lost")}

    def table(self) -> str:
        """The simulator's per-tenant table, then the outcome counts."""
        counts = self.counts()
        return (f"{self.summary.table()}\nsent {len(self.results)}: finished {counts['finished']}, rejected "
                f"{counts['rejected']}, lost {counts['lost']}; wall {self.wall_s:.1f} s, worst send lag "
                f"{self.max_send_lag_s * 1000:.1f} ms")


def plan_requests(tenants: list[TenantSpec], scenario_duration_s: float, config: LoadgenConfig) -> RequestBatch:
    """The simulator's request sequence for the scenario and seed, cut at ``config.duration_s``."""
    if config.trace:
        tenants = [replace(t, trace=TraceSpec(path=config.trace)) for t in tenants]
    batch = generate_requests(tenants, scenario_duration_s, config.seed)
    horizon = config.duration_s or scenario_duration_s
    keep = batch.arrival_s < horizon
    return RequestBatch(arrival_s=batch.arrival_s[keep], tenant=batch.tenant[keep],
                        prompt_tokens=batch.prompt_tokens[keep], output_tokens=batch.output_tokens[keep],
                        tenant_names=batch.tenant_names)


def prompt_text(index: int, words: int) -> str:
    """A prompt of ``words`` words; the first names the request, so replicas share no cached prefix."""
    return " ".join([f"r{index}", *["hello"] * (words - 1)])


def request_body(config: LoadgenConfig, index: int, prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    """The JSON body of one request."""
    body: dict[str, Any] = {"model": config.model, "max_tokens": output_tokens, "ignore_eos": True,
                            "stream": True, "stream_options": {"include_usage": True}}
    text = prompt_text(index, prompt_tokens)
    if config.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


class _Replayer:
    """Sends the planned requests at their times and collects their results."""

    def __init__(self, config: LoadgenConfig, batch: RequestBatch, session: aiohttp.ClientSession) -> None:
        self.config, self.batch, self.session = config, batch, session
        self.path = "/v1/chat/completions" if config.endpoint == "chat" else "/v1/completions"
        self.gate = asyncio.Semaphore(config.max_in_flight)
        self.max_lag_s = 0.0

    async def run(self, progress: tqdm) -> list[RequestResult]:
        start = time.monotonic()
        tasks = []
        for index in range(len(self.batch)):
            due = start + float(self.batch.arrival_s[index]) * self.config.time_scale
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.max_lag_s = max(self.max_lag_s, time.monotonic() - due)
            tasks.append(asyncio.create_task(self._one(index, due)))
            tasks[-1].add_done_callback(lambda _: progress.update())
        return list(await asyncio.gather(*tasks))

    async def _one(self, index: int, due: float) -> RequestResult:
        batch = self.batch
        tenant = batch.tenant_names[int(batch.tenant[index])]
        result = RequestResult(index, tenant, float(batch.arrival_s[index]), int(batch.prompt_tokens[index]),
                               int(batch.output_tokens[index]))
        key = self.config.api_keys.get(tenant)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = request_body(self.config, index, result.prompt_tokens, result.output_tokens)
        async with self.gate:
            try:
                await self._send(body, headers, result, due)
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                result.outcome, result.error = "lost", f"{error.__class__.__name__}: {error}"
        return result

    async def _send(self, body: dict[str, Any], headers: dict[str, str], result: RequestResult, due: float) -> None:
        scale = self.config.time_scale
        async with self.session.post(self.config.url + self.path, json=body, headers=headers) as response:
            result.status = response.status
            if response.status != 200:
                result.outcome = "rejected" if response.status in REJECTED_STATUSES else "lost"
                result.error = (await response.text())[:200]
                return
            chunks, usage, done = 0, None, False
            async for line in response.content:
                event = line.decode("utf-8").strip()
                if not event.startswith("data:"):
                    continue
                payload = event[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                data = json.loads(payload)
                if data.get("error"):
                    raise ValueError(f"stream error: {data['error'].get('message', '')}")
                usage = data.get("usage") or usage
                if _has_text(data):
                    chunks += 1
                    if math.isnan(result.ttft_s):
                        result.ttft_s = (time.monotonic() - due) / scale
        result.e2e_s = (time.monotonic() - due) / scale
        result.received_tokens = int(usage["completion_tokens"]) if usage else chunks
        result.outcome = "finished" if done and result.received_tokens > 0 else "lost"
        result.error = "" if done else "the stream ended without [DONE]"


def _has_text(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or []:
        delta = choice.get("delta")
        if (delta.get("content") if isinstance(delta, dict) else choice.get("text")):
            return True
    return False


def tenant_metrics(results: list[RequestResult], spec: TenantSpec) -> TenantMetrics:
    """One tenant's results as the gateway's per-tenant series would count them (docs/metrics.md)."""
    metrics = TenantMetrics()
    counters, histograms = metrics.counters, metrics.histograms
    for result in (r for r in results if r.tenant == spec.name):
        counters[GW_ARRIVED] += 1
        if result.outcome != "finished":
            counters[GW_REJECTED] += 1
            counters[GW_MISSED] += 1
            continue
        out = result.received_tokens
        tpot = tpot_s(result.ttft_s, result.e2e_s, out)
        counters[GW_FINISHED] += 1
        counters[GW_PROMPT_TOKENS] += result.prompt_tokens
        counters[GW_GENERATION_TOKENS] += out
        histograms[GW_TTFT].observe(result.ttft_s)
        histograms[GW_E2E].observe(result.e2e_s)
        if out > 1:
            histograms[GW_TPOT].observe(tpot)
        judgement = judge(result.ttft_s, tpot, result.prompt_tokens, out, spec)
        counters[GW_MET if judgement.met else GW_MISSED] += 1
        counters[GW_GOODPUT_PROMPT_TOKENS] += judgement.goodput_prompt_tokens
        counters[GW_GOODPUT_GENERATION_TOKENS] += judgement.goodput_output_tokens
    return metrics


def summarize_results(results: list[RequestResult], tenants: list[TenantSpec], duration_s: float) -> RunSummary:
    """The simulator's per-tenant summary of a replay (no cost: the client cannot see it)."""
    snapshot = MetricsSnapshot(start_s=0.0, end_s=duration_s, pools={}, source="loadgen",
                               tenants={t.name: tenant_metrics(results, t) for t in tenants})
    return summarize([snapshot], tenants)


async def replay(config: LoadgenConfig, tenants: list[TenantSpec], scenario_duration_s: float) -> LoadgenReport:
    """Replay the scenario's requests against ``config.url``; returns every result and the summary."""
    batch = plan_requests(tenants, scenario_duration_s, config)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        with tqdm(total=len(batch), unit="req", disable=not config.progress, desc="loadgen") as progress:
            replayer = _Replayer(config, batch, session)
            results = await replayer.run(progress)
    summary = summarize_results(results, tenants, config.duration_s or scenario_duration_s)
    return LoadgenReport(results, summary, time.monotonic() - started, replayer.max_lag_s)


def write_report(report: LoadgenReport, path: str | Path) -> None:
    """Write the summary and every request's result as JSON."""
    data = {"summary": report.summary.to_dict(), "counts": report.counts(),
            "results": [asdict(result) for result in report.results]}
    Path(path).write_text(json.dumps(data, indent=1, allow_nan=True))


def run_loadgen(config: LoadgenConfig, scenario: Any) -> LoadgenReport:
    """Replay ``scenario`` (name, YAML path or mapping) as ``config`` says; print and return the report."""
    tenants, scenario_duration_s = scenario_workload(scenario)
    missing = sorted(t.name for t in tenants if t.name not in config.api_keys)
    if missing:
        log.warning("no API key for tenants %s: their requests carry none", missing)
    report = asyncio.run(replay(config, tenants, scenario_duration_s))
    print(report.table(), flush=True)
    if config.output_json:
        write_report(report, config.output_json)
    return report


def main(cfg: DictConfig) -> LoadgenReport:
    """Hydra entry (``configs/loadgen.yaml``): ``cfg.scenario`` is the scenario node, the other keys are
    :class:`LoadgenConfig` fields (``hydra`` is ignored)."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    scenario = raw.pop("scenario")
    raw.pop("hydra", None)
    config = build(LoadgenConfig, raw)
    log.info("loadgen config: %s", config)
    return run_loadgen(config, scenario)
