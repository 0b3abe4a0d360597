"""Settings of the tenant-aware P/D gateway: who may call it, where the replicas are, how hard to retry.

The dataclasses validate themselves at construction; every error names the key, the bad value and the fix.
API keys are secrets: they never appear in a ``repr``, a log line, an error message or a metric.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from disaggpilot.env.errors import ConfigError, require
from disaggpilot.env.metrics import DEFAULT_TPOT_SLO_S, DEFAULT_TTFT_SLO_S

REPLICA_ROLES: tuple[str, ...] = ("prefill", "decode", "aggregated")
"""Roles a replica can have (the launcher's discovery file uses the same words)."""
REPLICA_STATES: tuple[str, ...] = ("starting", "ready", "draining")
"""Lifecycle states of a replica; only ``ready`` ones get new requests."""
JSON_BYTES_PER_CHAR = 6
"""Longest JSON spelling of one prompt character (``\\u00e9``), used to derive the body limit (bytes)."""
BODY_OVERHEAD_BYTES = 1 << 20
"""Room in the derived body limit for JSON structure and fields other than the prompt (bytes)."""


@dataclass
class TenantConfig:
    """One tenant: its API key, its admission limits and the objectives its requests are judged against."""

    name: str = "default"
    """Label of the tenant on every ``disaggpilot_gateway_*`` series (never the key)."""
    api_key: str = field(default="", repr=False)
    """The tenant's secret key, sent as ``Authorization: Bearer <key>``; empty to read ``api_key_env``."""
    api_key_env: str = ""
    """Name of an environment variable holding the key (used when ``api_key`` is empty)."""
    max_concurrency: int = 64
    """Requests of this tenant in flight at once before new ones get 429 (requests)."""
    token_rate_per_s: float = 0.0
    """Sustained admitted tokens (prompt + max_tokens) per second; 0 disables the limit (tokens/s)."""
    token_burst: int = 0
    """Token-bucket size; 0 means one second of ``token_rate_per_s`` or 1 (tokens)."""
    ttft_slo_s: float = DEFAULT_TTFT_SLO_S
    """Time-to-first-token objective used for the met/missed counters (seconds)."""
    tpot_slo_s: float = DEFAULT_TPOT_SLO_S
    """Time-per-output-token objective used for the met/missed counters (seconds per token)."""

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and self.name.strip() != "", "name", self.name, "use a non-empty label")
        if not self.api_key and self.api_key_env:
            self.api_key = os.environ.get(self.api_key_env, "")
            require(self.api_key != "", "api_key_env", self.api_key_env, "export that variable with the key")
        # The value is a secret: the message shows a placeholder, never the key.
        require(isinstance(self.api_key, str) and len(self.api_key) >= 8, "api_key", "<hidden>",
                "give a key of at least 8 characters (or set api_key_env)")
        require(_is_int(self.max_concurrency) and self.max_concurrency >= 1, "max_concurrency",
                self.max_concurrency, "use an integer >= 1 (requests in flight)")
        require(_finite_at_least(self.token_rate_per_s, 0.0), "token_rate_per_s", self.token_rate_per_s,
                "use a rate >= 0 (tokens per second; 0 disables the limit)")
        require(_is_int(self.token_burst) and self.token_burst >= 0, "token_burst", self.token_burst,
                "use an integer >= 0 (tokens; 0 = one second of the rate)")
        if self.token_burst == 0:
            self.token_burst = max(1, int(self.token_rate_per_s))
        for key in ("ttft_slo_s", "tpot_slo_s"):
            require(_finite_at_least(getattr(self, key), 1e-9), key, getattr(self, key), "use seconds > 0")


@dataclass
class ReplicaEndpoint:
    """One replica as the discovery file (or the static list) describes it."""

    name: str = ""
    """Unique replica name (e.g. ``prefill-0``)."""
    role: str = "aggregated"
    """``prefill``, ``decode`` or ``aggregated``."""
    url: str = ""
    """Base URL of its OpenAI-compatible server (``http://127.0.0.1:8101``)."""
    state: str = "ready"
    """``starting``, ``ready`` or ``draining``; only ``ready`` replicas get new requests."""

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and self.name != "", "name", self.name, "give each replica a name")
        require(self.role in REPLICA_ROLES, "role", self.role, f"use one of {list(REPLICA_ROLES)}")
        require(isinstance(self.url, str) and self.url.startswith(("http://", "https://")), "url", self.url,
                "give a base URL such as http://127.0.0.1:8101")
        require(self.state in REPLICA_STATES, "state", self.state, f"use one of {list(REPLICA_STATES)}")
        self.url = self.url.rstrip("/")


@dataclass
class GatewayConfig:
    """Everything the gateway needs. Give ``discovery_file`` or ``replicas`` (or both: the file wins)."""

    tenants: list[TenantConfig] = field(default_factory=list)
    """Who may call the gateway; keys must be unique."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 0
    """Port to listen on; 0 picks a free one (reported at start)."""
    discovery_file: str = ""
    """The launcher's discovery JSON (``{"replicas": [...]}``), re-read when it changes; empty: static list."""
    discovery_poll_s: float = 0.25
    """How often the discovery file's modification time is checked (seconds)."""
    replicas: list[ReplicaEndpoint] = field(default_factory=list)
    """Static replica list, used when ``discovery_file`` is empty."""
    model: str = "llama-3.1-70b"
    """Served model name; requests naming another model get 404."""
    max_model_len: int = 131072
    """Context length: prompt + max_tokens beyond it gets 400 before any replica is touched (tokens)."""
    vocab_size: int = 0
    """Tokenizer vocabulary: token ids in a prompt must be below it (tokens); 0 = unknown, ids need only be >= 0."""
    max_chars_per_token: int = 16
    """Bound on a prompt's characters per token: a prompt longer than ``max_model_len`` x this is refused with
    400 whatever its token count, since counting is an estimate (characters per token; English text averages
    about 4)."""
    max_body_bytes: int = 0
    """Largest request body accepted; a larger one gets 413 before it is read (bytes). 0 derives it from the
    context: ``max_model_len x max_chars_per_token x 6`` (the longest JSON escape of a character) + 1 MiB."""
    default_max_tokens: int = 256
    """``max_tokens`` when a request omits it (tokens)."""
    connect_timeout_s: float = 2.0
    """Limit on opening a connection to a replica (seconds); a slower replica counts as failed."""
    first_byte_timeout_s: float = 600.0
    """Limit on waiting for a replica's answer headers, and between two streamed chunks (seconds)."""
    max_attempts: int = 4
    """Attempts per request over all replicas (prefill + decode count as one attempt) before it is lost."""
    retry_backoff_s: float = 0.05
    """Wait before a retry, doubled each attempt (seconds)."""
    failure_cooldown_s: float = 2.0
    """A replica that failed gets no new requests for this long unless no other one is left (seconds)."""
    replica_wait_s: float = 30.0
    """How long a request waits for a ready replica (e.g. while one starts) before 503 (seconds)."""

    def __post_init__(self) -> None:
        self.tenants = [_coerce(item, TenantConfig, f"tenants[{i}]") for i, item in enumerate(self.tenants)]
        self.replicas = [_coerce(item, ReplicaEndpoint, f"replicas[{i}]") for i, item in enumerate(self.replicas)]
        require(len(self.tenants) >= 1, "tenants", [], "configure at least one tenant with an api_key")
        names = [tenant.name for tenant in self.tenants]
        require(len(set(names)) == len(names), "tenants[].name", names, "give tenants unique names")
        keys = [tenant.api_key for tenant in self.tenants]
        require(len(set(keys)) == len(keys), "tenants[].api_key", "<hidden>", "give every tenant its own key")
        require(self.discovery_file != "" or len(self.replicas) > 0, "discovery_file", self.discovery_file,
                "name the launcher's discovery file, or list static replicas")
        require(_is_int(self.port) and 0 <= self.port < 65536, "port", self.port, "use 0..65535 (0: free port)")
        for key in ("max_model_len", "default_max_tokens", "max_attempts", "max_chars_per_token"):
            require(_is_int(getattr(self, key)) and getattr(self, key) >= 1, key, getattr(self, key),
                    "use an integer >= 1")
        for key in ("vocab_size", "max_body_bytes"):
            require(_is_int(getattr(self, key)) and getattr(self, key) >= 0, key, getattr(self, key),
                    "use an integer >= 0 (0: unknown / derived from max_model_len)")
        for key in ("discovery_poll_s", "connect_timeout_s", "first_byte_timeout_s", "replica_wait_s"):
            require(_finite_at_least(getattr(self, key), 1e-6), key, getattr(self, key), "use seconds > 0")
        for key in ("retry_backoff_s", "failure_cooldown_s"):
            require(_finite_at_least(getattr(self, key), 0.0), key, getattr(self, key), "use seconds >= 0")

    @property
    def max_prompt_chars(self) -> int:
        """Longest prompt accepted, over all its messages (characters)."""
        return self.max_model_len * self.max_chars_per_token

    @property
    def body_limit_bytes(self) -> int:
        """Largest request body accepted: ``max_body_bytes``, or the limit derived from the context (bytes)."""
        return self.max_body_bytes or self.max_prompt_chars * JSON_BYTES_PER_CHAR + BODY_OVERHEAD_BYTES

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GatewayConfig:
        """Build from a plain mapping (a YAML file or a resolved OmegaConf node); unknown keys are errors."""
        return _coerce(raw, cls, "gateway")

    @classmethod
    def from_file(cls, path: str | Path) -> GatewayConfig:
        """Read a YAML (or JSON) file holding the fields of :class:`GatewayConfig`."""
        source = Path(path)
        require(source.is_file(), "--config", str(source), "give the path of a gateway YAML file")
        raw = yaml.safe_load(source.read_text())
        require(isinstance(raw, Mapping), "--config", str(source), "the file must hold a mapping of fields")
        return cls.from_dict(raw)


def _coerce(value: Any, cls: type[Any], key: str) -> Any:
    """``value`` itself when it is a ``cls``; ``cls(**value)`` for a mapping; errors are prefixed by ``key``."""
    if isinstance(value, cls):
        return value
    require(isinstance(value, Mapping), key, type(value).__name__, f"give a mapping of {cls.__name__} fields")
    known = {item.name for item in fields(cls)}
    unknown = sorted(str(name) for name in value if name not in known)
    require(not unknown, f"{key}.{unknown[0] if unknown else ''}", "?", f"unknown field; known: {sorted(known)}")
    try:
        return cls(**value)
    except ConfigError as error:
        raise ConfigError(f"{key}.{error}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_at_least(value: object, low: float) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and value >= low
