"""Settings of the live backend (``configs/env/live.yaml``): where Prometheus is and which series are whose.

A *selector* is the inside of a PromQL label selector, e.g. ``namespace="llm",pool="prefill"``: the source
puts it between the braces of every query about that pool (or the gateway), so it must pick out exactly that
pool's vLLM replicas (or the gateway's targets). Selectors are checked at construction, so a typo fails at
start-up naming the key, not as a Prometheus ``bad_data`` answer later. No Prometheus address is a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omegaconf import MISSING

from disaggpilot.env.backend import POOL_ROLES
from disaggpilot.env.errors import require
from disaggpilot.env.structured import build

_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
SELECTOR_PATTERN = re.compile(rf"^{_MATCHER}(?:,{_MATCHER})*,?\s*$")
"""One or more PromQL label matchers (``name="value"``, ``!=``, ``=~``, ``!~``), comma separated."""


def check_selector(key: str, selector: object) -> str:
    """``selector`` if it is a valid list of label matchers, else a ``ConfigError`` naming ``key``."""
    require(isinstance(selector, str) and bool(SELECTOR_PATTERN.match(selector)), key, selector,
            'use PromQL label matchers without braces, e.g. pool="prefill" or namespace="llm",pool=~"prefill.*"')
    assert isinstance(selector, str)
    return selector.strip().rstrip(",")


@dataclass
class PrometheusSourceConfig:
    """Where the live backend reads its metrics (Prometheus' HTTP API) and how it tells series apart."""

    url: str = MISSING
    """Prometheus base URL, e.g. ``http://prometheus.monitoring:9090`` (required; no default address)."""
    pools: dict[str, str] = field(default_factory=lambda: {"prefill": 'pool="prefill"', "decode": 'pool="decode"'})
    """Label matchers per pool role (``prefill``, ``decode``, ``aggregated``) selecting its vLLM replicas."""
    gateway: str = 'job="disaggpilot-gateway"'
    """Label matchers selecting the gateway's per-tenant ``disaggpilot_gateway_*`` series."""
    timeout_s: float = 5.0
    """Per HTTP request to Prometheus (seconds); a slower answer is a retryable error."""
    staleness_limit_s: float = 60.0
    """A pool's or the gateway's newest sample older than this marks the snapshot stale (seconds)."""
    retry_delay_s: float = 2.0
    """Wait suggested to callers of a retryable error (seconds)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        require(parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)
                and not parts.query, "live.prometheus.url", self.url,
                "set Prometheus' base URL, e.g. http://prometheus.monitoring:9090 (no path to /api, no query)")
        self.url = self.url.rstrip("/")
        require(isinstance(self.pools, Mapping) and len(self.pools) > 0, "live.prometheus.pools", self.pools,
                'map each pool role to its selector, e.g. {prefill: pool="prefill", decode: pool="decode"}')
        self.pools = {str(role): check_selector(f"live.prometheus.pools.{role}", selector)
                      for role, selector in self.pools.items()}
        for role in self.pools:
            require(role in POOL_ROLES, "live.prometheus.pools", role, f"use pool roles from {POOL_ROLES}")
        self.gateway = check_selector("live.prometheus.gateway", self.gateway)
        require(self.timeout_s > 0, "live.prometheus.timeout_s", self.timeout_s, "use a positive number of seconds")
        require(self.staleness_limit_s > 0, "live.prometheus.staleness_limit_s", self.staleness_limit_s,
                "use a positive age in seconds (a few scrape intervals)")
        require(self.retry_delay_s >= 0, "live.prometheus.retry_delay_s", self.retry_delay_s, "use >= 0 seconds")


@dataclass
class LiveConfig:
    """The live backend: its metrics source and what Prometheus cannot say (the price)."""

    prometheus: PrometheusSourceConfig = MISSING
    """Where and how to read the metrics contract (required: its ``url`` has no default)."""
    usd_per_gpu_hour: float | None = None
    """Price used for ``cost_usd`` (USD per GPU-hour); null takes the scenario's, then the GPU catalog's."""
    time_scale: float = 1.0
    """Wall seconds per cluster second: 1 for a real cluster. A rig of emulated GPUs running faster than real
    ones (``rig.time_scale``, e.g. 0.25) reads in the scenario's own time with the same factor: intervals,
    snapshot times and latencies are converted, so a policy sees the rates and latencies it was trained on."""

    def __post_init__(self) -> None:
        require(isinstance(self.prometheus, PrometheusSourceConfig), "live.prometheus", self.prometheus,
                "set live.prometheus.url (env.live.prometheus.url=<Prometheus URL>)")
        require(isinstance(self.time_scale, (int, float)) and 0 < self.time_scale <= 1, "live.time_scale",
                self.time_scale, "use 1 for a real cluster, or the emulated rig's time_scale (0 < factor <= 1)")
        require(self.usd_per_gpu_hour is None or self.usd_per_gpu_hour >= 0, "live.usd_per_gpu_hour",
                self.usd_per_gpu_hour, "use a price >= 0 in USD per GPU-hour, or null for the scenario's")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LiveConfig:
        """Build from a mapping or a config node with ``OmegaConf.to_object``; an unknown key is named."""
        return build(cls, raw, "live")
