"""The Prometheus HTTP API client: answers parsed, failures typed by what retrying can do.

Broken answers come from an injected transport (a real Prometheus never sends them); the rest runs against
the session's real Prometheus, or a port where nothing listens.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from disaggpilot.env.errors import PermanentError, TemporaryError
from disaggpilot.env.live.errors import MalformedResponseError, PrometheusQueryError, PrometheusUnavailableError
from disaggpilot.env.live.promql import HttpResponse, PrometheusClient, first_of, range_of
from disaggpilot.localcluster.prometheus_server import free_port
from tests.env.live.conftest import Rig


def answering(status: int, body: object) -> PrometheusClient:
    """A client whose every request gets ``status`` and ``body`` (JSON-encoded unless bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return PrometheusClient("http://prometheus.test:9090", retry_delay_s=4.0,
                            transport=lambda url, form, timeout: HttpResponse(status, raw))


def vector(*elements: object) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(elements)}}


def test_vector_values_are_parsed_with_labels_nan_and_infinities() -> None:
    client = answering(200, vector({"metric": {"pool": "prefill"}, "value": [1.5, "3.25"]},
                                   {"metric": {}, "value": [1.5, "NaN"]}, {"metric": {}, "value": [1.5, "+Inf"]}))
    samples = client.query("up", time.time())
    assert samples[0].labels == {"pool": "prefill"} and samples[0].value == 3.25
    assert math.isnan(samples[1].value) and samples[2].value == math.inf


def test_scalar_results_are_one_sample() -> None:
    client = answering(200, {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "2"]}})
    assert [s.value for s in client.query("scalar(up)", 0.0)] == [2.0]


@pytest.mark.parametrize(("body", "field"), [
    (b"<html>not prometheus</html>", "not a JSON object"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "data.resultType is 'matrix'"),
    ({"status": "success", "data": {"resultType": "vector", "result": {}}}, "data.result is dict"),
    (vector({"value": [1, "2"]}), r"data.result\[0\].metric is missing"),
    (vector({"metric": {}, "value": [1, 2]}), r"data.result\[0\].value is \[1, 2\], expected \[timestamp"),
    (vector({"metric": {}, "value": [1, "lots"]}), r"data.result\[0\].value holds 'lots'"),
    (vector({"metric": {"le": 1}, "value": [1, "2"]}), "non-string labels"),
], ids=["html", "matrix", "result-not-list", "no-metric", "number-value", "word-value", "label-type"])
def test_malformed_answers_are_permanent_errors_naming_the_field(body: object, field: str) -> None:
    with pytest.raises(MalformedResponseError, match=field) as caught:
        answering(200, body).query("up", 0.0)
    assert isinstance(caught.value, PermanentError)


def matrix(*elements: object) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(elements)}}


def test_range_vector_points_are_parsed_in_order_with_labels() -> None:
    client = answering(200, matrix({"metric": {"tenant": "chat"}, "values": [[10, "1.5"], [12, "NaN"]]}))
    [series] = client.query_series("x[4s:2s]", 12.0)
    assert series.labels == {"tenant": "chat"} and series.points[0] == (10.0, 1.5)
    assert series.points[1][0] == 12.0 and math.isnan(series.points[1][1])


@pytest.mark.parametrize(("body", "field"), [
    (vector(), "data.resultType is 'vector', expected 'matrix'.*subquery"),
    ({"status": "success", "data": {"resultType": "matrix", "result": {}}}, "data.result is dict"),
    (matrix({"values": []}), r"data.result\[0\].metric is missing"),
    (matrix({"metric": {}}), r"data.result\[0\].values is missing or not a list"),
    (matrix({"metric": {}, "values": [[1, 2]]}), r"data.result\[0\].values\[0\] is \[1, 2\], expected \[timestamp"),
], ids=["vector", "result-not-list", "no-metric", "no-values", "number-value"])
def test_malformed_range_vectors_are_permanent_errors_naming_the_field(body: object, field: str) -> None:
    with pytest.raises(MalformedResponseError, match=field):
        answering(200, body).query_series("x[4s:2s]", 0.0)


def test_a_404_points_at_the_url_setting() -> None:
    with pytest.raises(MalformedResponseError, match=r"check live\.prometheus\.url"):
        answering(404, b"404 page not found").query("up", 0.0)


@pytest.mark.parametrize(("status", "body"), [
    (503, b"Service Unavailable"), (502, b"<html>bad gateway</html>"), (429, b"slow down"),
    (422, {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}),
], ids=["503", "502-html", "429", "query-timeout"])
def test_overload_and_5xx_are_retryable_with_the_configured_delay(status: int, body: object) -> None:
    with pytest.raises(PrometheusUnavailableError, match=f"answered {status}") as caught:
        answering(status, body).query("up", 0.0)
    assert isinstance(caught.value, TemporaryError) and caught.value.delay_s == 4.0


def test_transport_failures_are_retryable() -> None:
    def refuse(url: str, form: bytes, timeout: float) -> HttpResponse:
        raise TimeoutError("timed out")

    with pytest.raises(PrometheusUnavailableError, match=r"raise live\.prometheus\.timeout_s"):
        PrometheusClient("http://p:9090", transport=refuse).query("up", 0.0)


def test_nothing_listening_is_retryable() -> None:
    with pytest.raises(PrometheusUnavailableError, match="did not answer"):
        PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout_s=1.0).query("up", time.time())


def test_builders() -> None:
    assert range_of(30.0) == "30000ms" and range_of(0.0) == "1ms"
    assert first_of(("a", "b"), 'pool="p"') == 'a{pool="p"} or b{pool="p"}'
    assert first_of(("a",), "x=\"y\"", "_bucket", 1.5) == 'increase(a_bucket{x="y"}[1500ms])'


# ----- a real Prometheus ---------------------------------------------------------------------------------------
def test_real_prometheus_answers_and_rejects_bad_promql(rig: Rig) -> None:
    client = PrometheusClient(rig.prometheus.url)
    up = client.query('up{job="gateway"}', time.time())
    assert [(s.labels["job"], s.value) for s in up] == [("gateway", 1.0)]
    rig.wait_for_history(5.0)
    [series] = client.query_series('up{job="gateway"}[4s:2s]', time.time())  # steps at multiples of 2 s
    assert len(series.points) == 2 and all(value == 1.0 for _, value in series.points)
    assert series.points[1][0] - series.points[0][0] == 2.0
    with pytest.raises(PrometheusQueryError, match=r"rejected query 'sum\(up\{pool=\}\)' \(400, bad_data") as caught:
        client.query("sum(up{pool=})", time.time())
    assert isinstance(caught.value, PermanentError)
