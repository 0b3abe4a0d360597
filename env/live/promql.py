"""A small client of Prometheus' HTTP API (``/api/v1/query``), and helpers that build PromQL.

Only instant queries are needed: counters and histograms are read as ``increase(...[window])`` evaluated at
the end of the interval, gauges at that instant. The transport is injected (``urllib`` by default), so tests
can answer with recorded or broken bodies, while the integration tests run a real Prometheus.

Failures map onto ``env.live.errors`` by what retrying can do: no connection, a timeout, 429 or 5xx (and
Prometheus' own ``timeout``/``unavailable`` error types) are retryable; a rejected query and an answer that
is not the documented JSON envelope are permanent, and say which field was wrong and what to check.
Response format: https://prometheus.io/docs/prometheus/latest/querying/api/ (read, not copied).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from disaggpilot.env.live.errors import MalformedResponseError, PrometheusQueryError, PrometheusUnavailableError

RETRYABLE_ERROR_TYPES = frozenset({"timeout", "unavailable", "canceled"})
"""Prometheus ``errorType`` values that may pass on their own."""


class HttpResponse(NamedTuple):
    """What a transport returns: the status code and the raw body."""

    status: int
    body: bytes


Transport = Callable[[str, bytes, float], HttpResponse]
"""POST ``body`` (form-encoded) to a URL within ``timeout_s`` seconds; raise ``OSError`` when unreachable."""


def urllib_transport(url: str, body: bytes, timeout_s: float) -> HttpResponse:
    """The default transport: one ``urllib`` POST; HTTP error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return HttpResponse(response.status, response.read())
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, error.read())


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector.

    Attributes:
        labels: the series' labels (``__name__`` included when the query keeps it).
        value: the sample value (NaN and infinities kept as such).
    """

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One element of a range vector (a subquery's answer).

    Attributes:
        labels: the series' labels.
        points: (Unix time in seconds, value) pairs, oldest first.
    """

    labels: Mapping[str, str]
    points: list[tuple[float, float]]


class PrometheusClient:
    """Instant queries against one Prometheus.

    Args:
        url: base URL (``http://host:9090``), without ``/api/v1``.
        timeout_s: per request (seconds); also sent to Prometheus as the query's own timeout.
        transport: how requests are sent (default: ``urllib``).
        retry_delay_s: ``delay_s`` put on retryable errors (seconds).
    """

    def __init__(self, url: str, timeout_s: float = 5.0, transport: Transport | None = None,
                 retry_delay_s: float = 2.0) -> None:
        self.url, self.timeout_s, self.retry_delay_s = url.rstrip("/"), timeout_s, retry_delay_s
        self.transport = transport or urllib_transport

    def query(self, promql: str, at: float) -> list[Sample]:
        """Evaluate ``promql`` at Unix time ``at`` (seconds); an instant vector or scalar, as samples."""
        return parse_result(self.url, promql, self._data(promql, at))

    def query_series(self, promql: str, at: float) -> list[Series]:
        """Evaluate a range-vector ``promql`` (a subquery, ``expr[range:step]``) at Unix time ``at``: each series'
        points in time order."""
        return parse_matrix(self.url, promql, self._data(promql, at))

    def _data(self, promql: str, at: float) -> object:
        form = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}", "timeout": range_of(self.timeout_s)})
        endpoint = f"{self.url}/api/v1/query"
        try:
            response = self.transport(endpoint, form.encode(), self.timeout_s)
        except (OSError, http.client.HTTPException) as error:  # URLError, refused, reset, timeouts; bad status lines
            raise PrometheusUnavailableError(
                f"Prometheus at {self.url} did not answer query {promql!r}: {error}; check that it runs and that "
                "live.prometheus.url points at it (raise live.prometheus.timeout_s if it is only slow)",
                self.retry_delay_s) from error
        return self._checked(promql, response)

    def _checked(self, promql: str, response: HttpResponse) -> object:
        """The answer's ``data``, or the error its status and envelope call for."""
        envelope = _envelope(self.url, response)
        if response.status >= 500 or response.status == 429 or envelope.get("errorType") in RETRYABLE_ERROR_TYPES:
            raise PrometheusUnavailableError(
                f"Prometheus at {self.url} answered {response.status} to query {promql!r}: "
                f"{envelope.get('error', 'no error text')}; retry later", self.retry_delay_s)
        if envelope.get("status") != "success":
            raise PrometheusQueryError(
                f"Prometheus at {self.url} rejected query {promql!r} ({response.status}, "
                f"{envelope.get('errorType')}: {envelope.get('error')}); check the label selectors in "
                "live.prometheus.pools / live.prometheus.gateway")
        return envelope.get("data")


def _envelope(url: str, response: HttpResponse) -> dict[str, Any]:
    """The JSON object every API answer is wrapped in (an empty one for a non-JSON 5xx page)."""
    try:
        envelope = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        envelope = None
    if isinstance(envelope, dict):
        return envelope
    if response.status >= 500 or response.status == 429:
        return {}
    hint = "check live.prometheus.url: it must be Prometheus' base URL" if response.status == 404 else \
        "check that live.prometheus.url points at Prometheus' HTTP API, not another server or a proxy's page"
    raise MalformedResponseError(
        f"{url}/api/v1/query answered {response.status} with a body that is not a JSON object "
        f"({response.body[:80]!r}); {hint}")


def parse_result(url: str, promql: str, data: object) -> list[Sample]:
    """Samples of an API ``data`` field (``resultType`` ``vector`` or ``scalar``), checking every field."""
    where = f"the answer of {url} to {promql!r}"
    if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise MalformedResponseError(f"{where}: data.resultType is {kind!r}, expected 'vector' or 'scalar'; "
                                     "the query must be an instant-vector expression")
    result = data.get("result")
    if data["resultType"] == "scalar":
        return [Sample({}, _value(where, "data.result", result))]
    if not isinstance(result, list):
        raise MalformedResponseError(f"{where}: data.result is {type(result).__name__}, expected a list")
    return [_sample(where, index, element) for index, element in enumerate(result)]


def parse_matrix(url: str, promql: str, data: object) -> list[Series]:
    """Series of an API ``data`` field of ``resultType`` ``matrix``, checking every field."""
    where = f"the answer of {url} to {promql!r}"
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise MalformedResponseError(f"{where}: data.resultType is {kind!r}, expected 'matrix'; the query must be a "
                                     "range-vector expression such as a subquery (expr[range:step])")
    result = data.get("result")
    if not isinstance(result, list):
        raise MalformedResponseError(f"{where}: data.result is {type(result).__name__}, expected a list")
    return [_series(where, index, element) for index, element in enumerate(result)]


def _series(where: str, index: int, element: object) -> Series:
    field = f"data.result[{index}]"
    labels = _labels(where, field, element)
    values = element.get("values") if isinstance(element, dict) else None
    if not isinstance(values, list):
        raise MalformedResponseError(f"{where}: {field}.values is missing or not a list")
    points = []
    for i, pair in enumerate(values):
        value = _value(where, f"{field}.values[{i}]", pair)  # checks the pair's shape first
        points.append((float(pair[0]), value))
    return Series(labels, points)


def _sample(where: str, index: int, element: object) -> Sample:
    field = f"data.result[{index}]"
    labels = _labels(where, field, element)
    assert isinstance(element, dict)
    return Sample(labels, _value(where, f"{field}.value", element.get("value")))


def _labels(where: str, field: str, element: object) -> Mapping[str, str]:
    if not isinstance(element, dict) or not isinstance(element.get("metric"), dict):
        raise MalformedResponseError(f"{where}: {field}.metric is missing or not an object")
    labels = element["metric"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise MalformedResponseError(f"{where}: {field}.metric holds non-string labels {labels!r}")
    return labels


def _value(where: str, field: str, pair: object) -> float:
    """The number of a ``[timestamp, "value"]`` pair; Prometheus sends values as strings ("NaN", "+Inf")."""
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], int | float)
            and isinstance(pair[1], str)):
        raise MalformedResponseError(f'{where}: {field} is {pair!r}, expected [timestamp, "value"]')
    try:
        return float(pair[1])
    except ValueError:
        raise MalformedResponseError(f"{where}: {field} holds {pair[1]!r}, which is not a number") from None


# ----- PromQL builders -------------------------------------------------------------------------------------
def series(name: str, selector: str) -> str:
    """``name{selector}``."""
    return f"{name}{{{selector}}}"


def range_of(seconds: float) -> str:
    """A PromQL range duration in whole milliseconds (``30000ms``); at least 1 ms."""
    return f"{max(1, round(seconds * 1000.0))}ms"


def first_of(names: Sequence[str], selector: str, suffix: str = "", window_s: float | None = None) -> str:
    """The series of the first name each replica exposes: ``a{s} or b{s}`` (``or`` keeps the left side's
    series and adds right-side series whose labels, the name aside, match none on the left), optionally as
    ``increase(...[window])`` per name. How a current and an older vLLM metric name are both accepted, even in
    a pool that mixes vLLM versions."""
    def one(name: str) -> str:
        selected = series(name + suffix, selector)
        return selected if window_s is None else f"increase({selected}[{range_of(window_s)}])"

    return " or ".join(one(name) for name in names)
