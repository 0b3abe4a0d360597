"""Errors raised by the live backend (``env.live``), with their retry semantics in the type.

Each is a subclass of :class:`env.errors.TemporaryError` (retry after ``delay_s``: Prometheus is down, timed
out or answered 5xx) or of :class:`env.errors.PermanentError` (retrying will not help: the URL does not point
at Prometheus, a selector is wrong, a replica exposes buckets the contract does not know). Every message
names what failed and how to fix it. Problems with the *data* (stale, missing, NaN, out of range) are not
errors: the source reports them in the snapshot, where ``controller.validate`` finds them (see
``env.live.source``).
"""

from __future__ import annotations

from disaggpilot.env.errors import EnvError, PermanentError, TemporaryError


class LiveError(EnvError):
    """Base class of every error raised by ``env.live``."""


class PrometheusUnavailableError(LiveError, TemporaryError):
    """Prometheus did not answer in time, refused the connection or answered 429/5xx."""


class PrometheusQueryError(LiveError, PermanentError):
    """Prometheus rejected a query (bad PromQL, usually from a bad selector in the config)."""


class MalformedResponseError(LiveError, PermanentError):
    """An answer is not what Prometheus' HTTP API documents (the URL may point at another server)."""


class MetricsFormatError(LiveError, PermanentError):
    """A scraped series breaks the metrics contract (unknown bucket edges, a non-numeric ``le``)."""


class SelectorMatchesNothingError(LiveError, PermanentError):
    """A pool's or the gateway's selector matches no scrape target at all when the backend starts."""
