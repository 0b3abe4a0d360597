"""The local Prometheus process: starts ready, reloads, reports failures with its log, and leaves nothing behind."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.live.promql import PrometheusClient
from disaggpilot.localcluster.exposition import ExpositionServer
from disaggpilot.localcluster.prometheus_server import PrometheusServer, PrometheusServerError, ScrapeJob, ScrapeTarget
from tests.env.live.conftest import requires_prometheus

pytestmark = requires_prometheus


def test_starts_ready_on_a_free_loopback_port_and_cleans_up() -> None:
    job = ScrapeJob("vllm", [ScrapeTarget("127.0.0.1:1", {"pool": "prefill"})], interval_s=2.0, timeout_s=1.0)
    with PrometheusServer([job]) as prometheus:
        assert prometheus.url.startswith("http://127.0.0.1:") and prometheus.port > 0
        with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=5) as response:
            assert response.status == 200
        written = json.loads(prometheus.config_path.read_text())["scrape_configs"][0]
        assert written["static_configs"] == [{"targets": ["127.0.0.1:1"], "labels": {"pool": "prefill"}}]
        assert (written["scrape_interval"], written["scrape_timeout"]) == ("2000ms", "1000ms")
        process, workdir = prometheus.process, prometheus.workdir
        assert process is not None and workdir is not None
    assert process.poll() is not None, "the process must be gone after the with-block"
    assert not Path(workdir).exists()
    prometheus.stop()  # idempotent


def test_reload_scrapes_new_targets() -> None:
    with ExpositionServer("served_value 42\n") as target, PrometheusServer() as prometheus:
        prometheus.reload([ScrapeJob("extra", [ScrapeTarget(target.address, {"role": "probe"})], interval_s=0.5)])
        targets = prometheus.wait_for_targets(timeout_s=20.0)
        assert [t["labels"]["role"] for t in targets] == ["probe"] and targets[0]["health"] == "up"
        samples = PrometheusClient(prometheus.url).query('served_value{role="probe"}', time.time())
        assert [s.value for s in samples] == [42.0] and target.scrapes >= 1


def test_a_refused_reload_says_why_and_keeps_the_old_config() -> None:
    with PrometheusServer() as prometheus:
        with pytest.raises(PrometheusServerError, match="refused the new configuration"):
            prometheus.reload([ScrapeJob("bad", [ScrapeTarget("127.0.0.1:1", {"not-a-label": "x"})])])
        with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=5) as response:
            assert response.status == 200


def test_a_process_that_exits_at_start_up_is_an_error_with_its_log() -> None:
    server = PrometheusServer(extra_args=["--no-such-flag"])
    with pytest.raises(PrometheusServerError, match=r"exited with .*no-such-flag"):
        server.start()
    assert server.process is None and server.workdir is None


def test_a_missing_binary_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(PrometheusServerError, match="apt-get install -y prometheus"):
        PrometheusServer(binary=tmp_path / "prometheus").start()


def test_scrape_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"ScrapeJob\(x\).timeout_s"):
        ScrapeJob("x", [], interval_s=1.0, timeout_s=2.0)
