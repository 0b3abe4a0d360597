"""The controller's own Prometheus metrics and its HTTP endpoints (``/metrics``, ``/healthz``, ``/readyz``).

Metrics live on a dedicated ``CollectorRegistry`` (no process or platform collectors, nothing global), so
tests can build several controllers in one process. Labels are pool roles, tenant names, modes and the
fixed fallback reasons only: no request contents, no credentials.

``disaggpilot_controller_fallback_total{reason}`` counts decisions taken by the fallback (or held), by the
reason the policy was set aside, recovery intervals included: ``rate(...) > 0`` is the alert.
``disaggpilot_controller_leader`` is 1 on the replica that may act (it holds the leader Lease, or leader
election is off) and 0 on a standby: ``sum(disaggpilot_controller_leader) != 1`` is the other alert.
``disaggpilot_controller_startup_scrape_pending`` is 1 while the daemon has not had its first snapshot (the
metrics source did not answer at start-up): it holds and tries again every interval, counting each held decision
under ``fallback_total{reason="scrape_error"}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from disaggpilot.controller.config import MODES
from disaggpilot.controller.decision import POLICY, Decision, replicas_of
from disaggpilot.controller.validate import REASONS

PREFIX = "disaggpilot_controller_"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Decision latency histogram edges (seconds)."""
READY_INTERVALS = 3
"""``/readyz`` answers 200 while the last successful decision is at most this many intervals old."""
REQUEST_TIMEOUT_S = 10.0
"""How long a connection to the HTTP server may stay silent before it is closed (seconds): a scrape sends its
request at once, while a client that connects and never sends one would otherwise hold a thread for good."""


class ControllerMetrics:
    """Every metric the controller exports, updated once per decision.

    Args:
        pools: pool roles (their label children exist from the start).
        tenants: tenant names.
        mode: the controller's mode (``shadow`` or ``active``).
        unix_time: wall clock for timestamps (seconds since the epoch).
    """

    def __init__(self, pools: Sequence[str], tenants: Sequence[str], mode: str,
                 unix_time: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.unix_time = unix_time
        self.last_success_s: float | None = None
        """Controller clock time of the last successful decision (seconds), for readiness."""
        self._define()
        self._initialise(pools, tenants, mode)

    def _define(self) -> None:
        r = self.registry
        self.decisions = Counter(f"{PREFIX}decisions", "Decisions taken", registry=r)
        self.applied = Counter(f"{PREFIX}applied_actions", "Actions the actuator applied", registry=r)
        self.desired = Gauge(f"{PREFIX}desired_replicas", "Replicas the last action asked for", ["pool"], registry=r)
        self.observed = Gauge(f"{PREFIX}observed_replicas", "Ready replicas in the last snapshot", ["pool"],
                              registry=r)
        self.fallback = Counter(f"{PREFIX}fallback", "Decisions not taken by the policy, by reason", ["reason"],
                                registry=r)
        self.latency = Histogram(f"{PREFIX}decision_latency_seconds", "Snapshot in hand to action chosen",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.attainment = Gauge(f"{PREFIX}tenant_attainment", "Observed SLO attainment in the last interval",
                                ["tenant"], registry=r)
        self.last_scrape = Gauge(f"{PREFIX}last_successful_scrape_timestamp_seconds",
                                 "Unix time of the last valid snapshot", registry=r)
        self.mode = Gauge(f"{PREFIX}mode", "1 for the mode the controller runs in", ["mode"], registry=r)
        self.on_policy = Gauge(f"{PREFIX}policy_in_control", "1 when the last decision was the policy's", registry=r)
        self.leader = Gauge(f"{PREFIX}leader", "1 while this replica may act (leader, or no leader election)",
                            registry=r)
        self.abandoned = Counter(f"{PREFIX}abandoned_decisions", "Decisions dropped before a write: leadership lost",
                                 registry=r)
        self.startup_pending = Gauge(f"{PREFIX}startup_scrape_pending",
                                     "1 until the metrics source has answered a first time", registry=r)
        self.slo_period_elapsed = Gauge(f"{PREFIX}slo_period_elapsed_seconds",
                                        "Seconds of the SLO period the policy's observation has counted "
                                        "(controller.slo_period_start sets its calendar)", registry=r)
        self.slo_period_counts_unknown = Gauge(f"{PREFIX}slo_period_counts_unknown",
                                               "Tenants whose requests so far in the SLO period could not be "
                                               "counted when the daemon joined it (their miss budgets started "
                                               "full)", registry=r)
        self.knobs_refused = Gauge(f"{PREFIX}knob_patch_refused",
                                   "1 while the last batch-knob patch of a pool was refused (RBAC); replicas still "
                                   "scale", ["pool"], registry=r)

    def _initialise(self, pools: Sequence[str], tenants: Sequence[str], mode: str) -> None:
        for pool in pools:
            self.desired.labels(pool=pool)
            self.observed.labels(pool=pool)
            self.knobs_refused.labels(pool=pool)
        for tenant in tenants:
            self.attainment.labels(tenant=tenant).set(float("nan"))
        for reason in REASONS:
            self.fallback.labels(reason=reason)
        for name in MODES:
            self.mode.labels(mode=name).set(1.0 if name == mode else 0.0)
        self.leader.set(1.0)  # no leader election until told otherwise (set_leader)

    def record(self, decision: Decision) -> None:
        """Account for one decision."""
        self.decisions.inc()
        self.latency.observe(decision.latency_s)
        self.on_policy.set(1.0 if decision.source == POLICY else 0.0)
        if decision.reason is not None:
            self.fallback.labels(reason=decision.reason).inc()
        if decision.applied:
            self.applied.inc()
        if decision.abandoned:
            self.abandoned.inc()
        if decision.action is not None:
            for pool, count in replicas_of(decision.action).items():
                self.desired.labels(pool=pool).set(count)
        if decision.snapshot is not None and decision.snapshot_valid:
            self._observe_snapshot(decision)
        if decision.successful:
            self.last_success_s = decision.time_s

    def set_leader(self, leader: bool) -> None:
        """Whether this replica may act now (called on every leadership change and every decision)."""
        self.leader.set(1.0 if leader else 0.0)

    def set_startup_scrape_pending(self, pending: bool) -> None:
        """Whether the daemon still waits for its first snapshot (holding meanwhile)."""
        self.startup_pending.set(1.0 if pending else 0.0)

    def set_slo_period_elapsed(self, elapsed_s: float) -> None:
        """Where the observation's SLO-period clock stands (seconds into the period)."""
        self.slo_period_elapsed.set(elapsed_s)

    def set_slo_period_counts_unknown(self, tenants: int) -> None:
        """How many tenants' SLO-period counts could not be read when the daemon joined the period."""
        self.slo_period_counts_unknown.set(tenants)

    def set_knobs_refused(self, pool: str, refused: bool) -> None:
        """Whether the actuator's last patch of ``pool``'s batch knobs was refused by RBAC."""
        self.knobs_refused.labels(pool=pool).set(1.0 if refused else 0.0)

    def _observe_snapshot(self, decision: Decision) -> None:
        assert decision.snapshot is not None
        self.last_scrape.set(self.unix_time())
        for pool, pool_metrics in decision.snapshot.pools.items():
            self.observed.labels(pool=pool).set(pool_metrics.replicas_ready)
        for tenant, tenant_metrics in decision.snapshot.tenants.items():
            self.attainment.labels(tenant=tenant).set(tenant_metrics.attainment())

    def ready(self, now_s: float, interval_s: float) -> bool:
        """A successful decision within :data:`READY_INTERVALS` intervals of ``now_s``."""
        last = self.last_success_s
        return last is not None and now_s - last <= READY_INTERVALS * interval_s

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` (the process answers) and ``/readyz`` in a background thread.

    Args:
        metrics: what to serve.
        now: the controller's clock (seconds), for readiness.
        interval_s: the control interval (seconds), for readiness.
        host: address to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`port`).
        request_timeout_s: socket timeout of each connection (seconds): a silent or half-open one is closed
            after it, releasing its thread.
    """

    def __init__(self, metrics: ControllerMetrics, now: Callable[[], float], interval_s: float,
                 host: str = "127.0.0.1", port: int = 0, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.metrics, self.now, self.interval_s = metrics, now, interval_s
        self.httpd = _Server((host, port), _handler(self, request_timeout_s))
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="controller-metrics", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host = self.httpd.server_address[0]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{self.port}"

    def start(self) -> MetricsServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout=5.0)
        self.httpd.server_close()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for ``path``."""
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.metrics.exposition()
        if route == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if route == "/readyz":
            ready = self.metrics.ready(self.now(), self.interval_s)
            return (200, "text/plain; charset=utf-8", b"ready\n") if ready else (
                503, "text/plain; charset=utf-8", b"no successful decision in the last 3 intervals\n")
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n"


class _Server(ThreadingHTTPServer):
    """One daemon thread per connection, and a listen backlog that a few silent clients cannot fill (the
    standard library's 5 would leave Prometheus unable to connect)."""

    daemon_threads = True
    request_queue_size = 128


def _handler(server: MetricsServer, request_timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout_s  # socketserver sets it on the connection: reads and writes give up after it

        def do_GET(self) -> None:  # http.server's naming
            status, content_type, body = server.respond(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: no request logs
            return

    return Handler
