"""A real Prometheus process on this machine, for tests and the local-cluster rig.

:class:`PrometheusServer` writes a configuration with the given scrape jobs, starts the ``prometheus`` binary
(Debian's package installs ``/usr/bin/prometheus``) on a free loopback port with its own temporary storage
and ``--web.enable-lifecycle``, waits until ``/-/ready`` answers, can rewrite its jobs and reload, and stops
the process and removes its files on exit, whatever happened (a finalizer kills it even if ``stop`` is never
called)::

    jobs = [ScrapeJob("vllm", [ScrapeTarget("127.0.0.1:8001", {"pool": "prefill"})], interval_s=1.0)]
    with PrometheusServer(jobs) as prometheus:
        prometheus.wait_for_targets()
        print(prometheus.url)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from disaggpilot.env.errors import EnvError, PermanentError, require
from disaggpilot.env.live.ports import free_port

DEFAULT_BINARY = "/usr/bin/prometheus"
"""Where Debian's ``prometheus`` package installs the server."""


class PrometheusServerError(EnvError, PermanentError):
    """The local Prometheus process could not be configured, started or reloaded."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint Prometheus scrapes.

    Attributes:
        address: ``host:port`` of the HTTP server exposing metrics.
        labels: labels Prometheus attaches to every series of this target (e.g. ``{"pool": "prefill"}``).
    """

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScrapeJob:
    """A scrape job: targets sharing an interval and a path.

    Attributes:
        name: the job name (the ``job`` label of its series).
        targets: the endpoints.
        interval_s: time between scrapes of each target (seconds).
        timeout_s: per scrape (seconds, at most ``interval_s``); None uses ``interval_s``.
        metrics_path: the HTTP path scraped.
        honor_timestamps: keep timestamps the target puts on its samples (Prometheus' default).
    """

    name: str
    targets: Sequence[ScrapeTarget]
    interval_s: float = 1.0
    timeout_s: float | None = None
    metrics_path: str = "/metrics"
    honor_timestamps: bool = True

    def __post_init__(self) -> None:
        require(self.interval_s >= 0.1, f"ScrapeJob({self.name}).interval_s", self.interval_s, "use >= 0.1 s")
        require(self.timeout_s is None or 0 < self.timeout_s <= self.interval_s, f"ScrapeJob({self.name}).timeout_s",
                self.timeout_s, f"use a timeout in (0, interval_s={self.interval_s}] seconds, or None")

    def to_config(self) -> dict[str, Any]:
        """This job as an entry of Prometheus' ``scrape_configs``."""
        return {
            "job_name": self.name, "scrape_interval": _duration(self.interval_s),
            "scrape_timeout": _duration(self.timeout_s or self.interval_s), "metrics_path": self.metrics_path,
            "honor_timestamps": self.honor_timestamps,
            "static_configs": [{"targets": [t.address], "labels": dict(t.labels)} for t in self.targets],
        }


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _kill(process: subprocess.Popen[bytes], workdir: Path | None) -> None:
    """Stop ``process`` (TERM, then KILL) and remove ``workdir``; safe to call twice."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class PrometheusServer:
    """A Prometheus server process scraping ``jobs``, on ``host`` at a free port.

    Args:
        jobs: scrape jobs (may be empty; :meth:`reload` changes them).
        binary: the ``prometheus`` executable.
        host: address to listen on (loopback by default).
        port: port to listen on; 0 picks a free one.
        ready_timeout_s: how long start-up may take before it is an error (seconds).
        extra_args: more command-line flags, e.g. ``("--query.lookback-delta=1m",)``.
    """

    def __init__(self, jobs: Sequence[ScrapeJob] = (), binary: str | Path = DEFAULT_BINARY,
                 host: str = "127.0.0.1", port: int = 0, ready_timeout_s: float = 30.0,
                 extra_args: Sequence[str] = ()) -> None:
        self.jobs, self.binary, self.host = list(jobs), Path(binary), host
        self.requested_port, self.ready_timeout_s, self.extra_args = port, ready_timeout_s, tuple(extra_args)
        self.port = 0
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # ----- lifecycle ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the HTTP API (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """The configuration file the process reads."""
        if self.workdir is None:
            raise PrometheusServerError("PrometheusServer is not started: call start() or use it in a with-block")
        return self.workdir / "prometheus.yml"

    def start(self) -> PrometheusServer:
        """Start the process and wait until it is ready; tries another port twice if the one picked was taken
        in the meantime."""
        if not self.binary.is_file():
            raise PrometheusServerError(f"no Prometheus binary at {self.binary}: install it (apt-get install -y "
                                        "prometheus) or pass binary=<path to prometheus>")
        for attempt in range(3):
            try:
                self._launch()
                return self
            except PrometheusServerError as error:
                self.stop()
                if self.requested_port or attempt == 2 or "address already in use" not in str(error):
                    raise
        return self  # unreachable: the last attempt returns or raises

    def _launch(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="disaggpilot-prometheus-"))
        self.port = self.requested_port or free_port(self.host)
        self._write_config()
        command = [str(self.binary), f"--config.file={self.config_path}",
                   f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address={self.host}:{self.port}",
                   "--web.enable-lifecycle", "--log.level=warn", *self.extra_args]
        with (self.workdir / "prometheus.log").open("wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self._finalizer = weakref.finalize(self, _kill, self.process, self.workdir)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PrometheusServerError(f"prometheus exited with {self.process.returncode} at start-up: "
                                            f"{self.log_tail()}")
            if self._get("/-/ready", timeout_s=1.0) is not None:
                return
            time.sleep(0.05)
        raise PrometheusServerError(f"prometheus at {self.url} was not ready after {self.ready_timeout_s} s: "
                                    f"{self.log_tail()}; raise ready_timeout_s on a slow machine")

    def stop(self) -> None:
        """Stop the process and delete its configuration and storage (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()  # runs _kill once
            self._finalizer = None
        elif self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.process, self.workdir = None, None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # ----- configuration -----------------------------------------------------------------------------------
    def _write_config(self) -> None:
        # JSON is YAML: no YAML writer needed, and label values are quoted safely.
        config = {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
                  "scrape_configs": [job.to_config() for job in self.jobs]}
        self.config_path.write_text(json.dumps(config, indent=2))

    def reload(self, jobs: Sequence[ScrapeJob]) -> None:
        """Replace the scrape jobs and make the running process load them (``POST /-/reload``)."""
        self.jobs = list(jobs)
        self._write_config()
        request = urllib.request.Request(f"{self.url}/-/reload", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            detail = error.read().decode(errors="replace") if isinstance(error, urllib.error.HTTPError) else error
            raise PrometheusServerError(f"prometheus at {self.url} refused the new configuration: {detail}") from error

    # ----- waiting for data ----------------------------------------------------------------------------------
    def targets(self) -> list[dict[str, Any]]:
        """The active targets as ``/api/v1/targets`` lists them (``labels``, ``health``, ``lastScrape``...)."""
        body = self._get("/api/v1/targets?state=active", timeout_s=5.0)
        if body is None:
            raise PrometheusServerError(f"prometheus at {self.url} did not list its targets: {self.log_tail()}")
        return list(json.loads(body)["data"]["activeTargets"])

    def wait_for_targets(self, timeout_s: float = 20.0, scrapes: int = 1) -> list[dict[str, Any]]:
        """Wait until every configured target has been seen scraped (up or not) at ``scrapes`` different times;
        returns the targets. Prometheus picks up new targets about 5 s after start or reload (its discovery
        updates are batched), hence the generous default."""
        expected = sum(len(job.targets) for job in self.jobs)
        seen: dict[str, set[str]] = {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            targets = self.targets()
            for target in targets:
                if target.get("health") != "unknown":
                    seen.setdefault(target["scrapeUrl"], set()).add(target["lastScrape"])
            if len(targets) >= expected and len(seen) >= expected and \
                    all(len(scrapes_seen) >= scrapes for scrapes_seen in seen.values()):
                return targets
            time.sleep(0.1)
        raise PrometheusServerError(f"prometheus at {self.url} scraped {len(seen)} of {expected} targets "
                                    f"{scrapes} times within {timeout_s} s")

    # ----- helpers -----------------------------------------------------------------------------------------
    def _get(self, path: str, timeout_s: float) -> bytes | None:
        """The body of a 200 answer, or None (not answering yet, or another status)."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as response:
                return bytes(response.read())
        except (urllib.error.URLError, OSError):
            return None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process' log (empty when not started)."""
        if self.workdir is None or not (self.workdir / "prometheus.log").exists():
            return ""
        return "\n".join((self.workdir / "prometheus.log").read_text(errors="replace").splitlines()[-lines:])
