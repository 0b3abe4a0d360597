"""One real Prometheus for the live tests, scraping real HTTP servers on loopback every 0.5 s.

The replicas serve vLLM's recorded ``/metrics`` (``data/vllm/``) with every counter and histogram
series grown linearly in time (``recorded x (1 + elapsed seconds)``), so ``increase`` over a window is the
recorded value times the window and bucket shapes are the recorded ones. The gateway serves per-tenant
series whose counters grow at known rates. Prometheus takes ~5 s to pick up targets, so one instance serves the
whole session (targets are told apart by labels: ``pool``, and ``vllm`` for the variant).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.data import data_file
from disaggpilot.env.live.config import PrometheusSourceConfig
from disaggpilot.env.metrics import BUCKETS, GW_E2E, GW_IN_FLIGHT, GW_TPOT, GW_TTFT, Histogram
from disaggpilot.localcluster.exposition import ExpositionServer
from disaggpilot.localcluster.prometheus_server import DEFAULT_BINARY, PrometheusServer, ScrapeJob, ScrapeTarget

PREFILL, DECODE = data_file("vllm/metrics_pd_prefill_nixl.txt"), data_file("vllm/metrics_pd_decode_nixl.txt")
UNDER_LOAD = data_file("vllm/metrics_aggregated_under_load.txt")
SCRAPE_S = 0.5

requires_prometheus = pytest.mark.skipif(not Path(DEFAULT_BINARY).is_file(),
                                         reason="needs Debian's prometheus (apt-get install -y prometheus)")


# ----- expositions -----------------------------------------------------------------------------------------
def _families(text: str) -> tuple[set[str], set[str]]:
    """Counter and histogram family names declared by ``# TYPE`` lines."""
    types = dict(re.findall(r"^# TYPE (\S+) (\w+)$", text, flags=re.MULTILINE))
    return ({n for n, t in types.items() if t == "counter"}, {n for n, t in types.items() if t == "histogram"})


def _grows(name: str, counters: set[str], histograms: set[str]) -> bool:
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in counters or (base != name and base in histograms)


def growing(text: str, start: float, clock: Callable[[], float] = time.time) -> Callable[[], str]:
    """``text`` with counter and histogram samples multiplied by ``1 + (clock() - start)``."""
    counters, histograms = _families(text)

    def render() -> str:
        factor = 1.0 + max(0.0, clock() - start)
        lines = []
        for line in text.splitlines():
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            if line and not line.startswith("#") and _grows(name, counters, histograms):
                head, value = line.rsplit(" ", 1)
                line = f"{head} {float(value) * factor!r}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    return render


def old_names(text: str) -> str:
    """The exposition as a vLLM before 0.11 named it: no per-request TPOT, the older KV and ITL names."""
    kept = [line for line in text.splitlines() if "vllm:request_time_per_output_token_seconds" not in line]
    return ("\n".join(kept) + "\n").replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc") \
        .replace("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")


def with_gauges(text: str, **values: str) -> str:
    """Replace the value of gauges named ``vllm:<key>`` (e.g. ``kv_cache_usage_perc="1.5"``)."""
    for key, value in values.items():
        text = re.sub(rf"^(vllm:{key}\{{[^}}]*\}}) \S+$", rf"\1 {value}", text, flags=re.MULTILINE)
    return text


def recorded_histogram(text: str, family: str) -> Histogram:
    """Per-bucket counts of one histogram family of a recorded exposition, on the contract's edges."""
    cumulative = {float(le): float(v) for le, v in
                  re.findall(rf'^{re.escape(family)}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (\S+)$', text, re.MULTILINE)}
    edges = BUCKETS.get(family, BUCKETS["vllm:inter_token_latency_seconds"])
    running = np.array([cumulative[e] for e in (*edges, math.inf)])
    return Histogram(edges, np.diff(running, prepend=0.0), 0.0)


def recorded_value(text: str, name: str) -> float:
    """Sum of a series' samples in a recorded exposition."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE))


@dataclass
class TenantRates:
    """A synthetic tenant at the gateway: counters per second, histogram observations per second per bucket
    (keyed by the bucket's upper edge), and an in-flight gauge."""

    counters: Mapping[str, float]
    buckets: Mapping[str, Mapping[float, float]]
    in_flight: float = 0.0

    def histogram(self, name: str) -> Histogram:
        edges = BUCKETS[name]
        counts = np.zeros(len(edges) + 1)
        for edge, rate in self.buckets.get(name, {}).items():
            counts[edges.index(edge)] += rate
        return Histogram(edges, counts, 0.0)


TENANTS: dict[str, TenantRates] = {
    "code": TenantRates(
        counters={"arrived": 4.0, "finished": 4.0, "slo_met": 3.0, "slo_missed": 1.0, "rejected": 0.0,
                  "prompt_tokens": 8000.0, "generation_tokens": 100.0, "goodput_prompt_tokens": 6000.0,
                  "goodput_generation_tokens": 75.0},
        buckets={GW_TTFT: {0.25: 2.0, 0.75: 1.5, 2.5: 0.5}, GW_TPOT: {0.025: 3.0, 0.05: 1.0},
                 GW_E2E: {1.0: 2.0, 5.0: 2.0}}, in_flight=7.0),
    "conv": TenantRates(
        counters={"arrived": 2.0, "finished": 2.0, "slo_met": 2.0, "slo_missed": 0.0, "rejected": 0.0,
                  "prompt_tokens": 2000.0, "generation_tokens": 400.0, "goodput_prompt_tokens": 2000.0,
                  "goodput_generation_tokens": 400.0},
        buckets={GW_TTFT: {0.1: 1.0, 0.5: 1.0}, GW_TPOT: {0.05: 2.0}, GW_E2E: {10.0: 2.0}}, in_flight=3.0),
}
COUNTER_NAMES = {
    "arrived": "requests_arrived_total", "finished": "requests_finished_total", "slo_met": "requests_slo_met_total",
    "slo_missed": "requests_slo_missed_total", "rejected": "requests_rejected_total",
    "prompt_tokens": "prompt_tokens_total", "generation_tokens": "generation_tokens_total",
    "goodput_prompt_tokens": "goodput_prompt_tokens_total",
    "goodput_generation_tokens": "goodput_generation_tokens_total",
}


def gateway(start: float, tenants: Mapping[str, TenantRates] = TENANTS, stale_by_s: float | None = None,
            clock: Callable[[], float] = time.time) -> Callable[[], str]:
    """The gateway's per-tenant exposition, counters at ``rate x elapsed``; ``stale_by_s`` stamps every sample
    that many seconds in the past (and freezes the elapsed time at 1 s), as a source whose data lags.

    The stamp follows the scrape time rather than a fixed instant: a fixed one would fall out of Prometheus'
    five-minute lookback when the session's tests take longer than that, and the series would vanish."""

    def render() -> str:
        suffix = f" {round((clock() - stale_by_s) * 1000)}" if stale_by_s is not None else ""
        elapsed = 1.0 if stale_by_s is not None else max(0.0, clock() - start)
        lines = [f"# TYPE {GW_IN_FLIGHT} gauge"]
        lines += [f'{GW_IN_FLIGHT}{{tenant="{t}"}} {r.in_flight}{suffix}' for t, r in tenants.items()]
        for key, name in COUNTER_NAMES.items():
            lines.append(f"# TYPE disaggpilot_gateway_{name} counter")
            lines += [f'disaggpilot_gateway_{name}{{tenant="{t}"}} {r.counters[key] * elapsed!r}{suffix}'
                      for t, r in tenants.items()]
        for family in (GW_TTFT, GW_TPOT, GW_E2E):
            lines.append(f"# TYPE {family} histogram")
            for tenant, rates in tenants.items():
                lines += _histogram_lines(family, tenant, rates.histogram(family), elapsed, suffix)
        return "\n".join(lines) + "\n"

    return render


def _histogram_lines(family: str, tenant: str, per_second: Histogram, elapsed: float, suffix: str) -> list[str]:
    running = np.cumsum(per_second.counts) * elapsed
    les = [*(repr(e) for e in per_second.edges), "+Inf"]
    lines = [f'{family}_bucket{{tenant="{tenant}",le="{le}"}} {float(v)!r}{suffix}'
             for le, v in zip(les, running, strict=True)]
    total = float(np.dot(per_second.counts[:-1], per_second.edges)) * elapsed
    return [*lines, f'{family}_sum{{tenant="{tenant}"}} {total!r}{suffix}',
            f'{family}_count{{tenant="{tenant}"}} {float(running[-1])!r}{suffix}']


# ----- the rig ---------------------------------------------------------------------------------------------
@dataclass
class Rig:
    """The session's Prometheus and its targets."""

    prometheus: PrometheusServer
    servers: dict[str, ExpositionServer]
    start: float
    """When the expositions started growing (Unix seconds)."""
    scraped_since: float
    """When every target had been scraped (Unix seconds): data older than this may be missing."""
    texts: dict[str, str] = field(default_factory=dict)

    def source_config(self, gateway_selector: str = 'job="gateway"', **pools: str) -> PrometheusSourceConfig:
        """A source config over this Prometheus; pools default to the current-vLLM replicas."""
        pools = pools or {"prefill": 'pool="prefill",vllm="current"', "decode": 'pool="decode",vllm="current"'}
        return PrometheusSourceConfig(url=self.prometheus.url, pools=pools, gateway=gateway_selector,
                                      timeout_s=5.0, staleness_limit_s=10.0)

    def wait_for_history(self, seconds: float) -> None:
        """Sleep until the targets have been scraped for at least ``seconds`` (plus one scrape)."""
        time.sleep(max(0.0, self.scraped_since + seconds + SCRAPE_S - time.time()))


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    if not Path(DEFAULT_BINARY).is_file():
        pytest.skip("needs Debian's prometheus (apt-get install -y prometheus)")
    start = time.time()
    prefill, decode, under_load = PREFILL.read_text(), DECODE.read_text(), UNDER_LOAD.read_text()
    bad_buckets = re.sub(r'^vllm:time_to_first_token_seconds_bucket\{[^}]*le="0.001"[^}]*\} \S+\n', "", prefill,
                         flags=re.MULTILINE)
    renders: dict[str, tuple[Callable[[], str] | str, dict[str, str], str]] = {
        "prefill_a": (growing(prefill, start), {"pool": "prefill", "vllm": "current"}, "vllm"),
        "prefill_b": (growing(under_load, start), {"pool": "prefill", "vllm": "current"}, "vllm"),
        "prefill_loading": ("", {"pool": "prefill", "vllm": "current"}, "vllm"),
        "decode_a": (growing(decode, start), {"pool": "decode", "vllm": "current"}, "vllm"),
        "prefill_old": (growing(old_names(prefill), start), {"pool": "prefill", "vllm": "old"}, "vllm"),
        "decode_old": (growing(old_names(decode), start), {"pool": "decode", "vllm": "old"}, "vllm"),
        "decode_odd": (with_gauges(decode, kv_cache_usage_perc="1.5", num_requests_waiting="NaN"),
                       {"pool": "decode", "vllm": "odd"}, "vllm"),
        "prefill_bad_buckets": (growing(bad_buckets, start), {"pool": "prefill", "vllm": "bad_buckets"}, "vllm"),
        "gateway": (gateway(start), {}, "gateway"),
        "gateway_stale": (gateway(start, stale_by_s=120.0), {}, "gateway_stale"),
    }
    servers = {name: ExpositionServer(render).start() for name, (render, _, _) in renders.items()}
    servers["prefill_loading"].available = False  # answers 503: up == 0, a replica still loading
    jobs: dict[str, list[ScrapeTarget]] = {}
    for name, (_, labels, job) in renders.items():
        jobs.setdefault(job, []).append(ScrapeTarget(servers[name].address, labels))
    prometheus = PrometheusServer([ScrapeJob(job, targets, interval_s=SCRAPE_S) for job, targets in jobs.items()])
    try:
        prometheus.start()
        prometheus.wait_for_targets(timeout_s=30.0, scrapes=1)
        texts = {"prefill": prefill, "decode": decode, "under_load": under_load}
        yield Rig(prometheus, servers, start, time.time(), texts)
    finally:
        prometheus.stop()
        for server in servers.values():
            server.stop()


class RecordingActuator:
    """A dry-run actuator: records the actions it is given, changes nothing."""

    def __init__(self) -> None:
        self.actions: list[ClusterAction] = []

    def apply(self, action: ClusterAction) -> None:
        self.actions.append(action)


class RecordingClock:
    """The real clock, recording every wait asked for."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            time.sleep(seconds)
