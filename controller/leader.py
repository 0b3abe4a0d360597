"""Leader election through a ``coordination.k8s.io/v1`` Lease, so two replicas of the controller never both act.

The algorithm is client-go's (``k8s.io/client-go/tools/leaderelection``), written against the official Python
client with an injected clock:

- every ``retry_period_s`` a candidate reads the Lease. It takes it when the Lease is free (no holder), or when
  the holder's record has not changed for ``leaseDurationSeconds`` *as measured on the candidate's own clock*
  since it first saw that record (no comparison of clocks across machines);
- the holder renews by writing ``renewTime``. Every write carries the ``resourceVersion`` it read, so the API
  server answers 409 to all but one of two candidates racing for the same record;
- the holder stops acting (:meth:`LeaderElector.is_leader` turns false) once ``renew_deadline_s`` has passed
  since its last successful renewal, even if its renewal thread is stuck. ``renew_deadline_s <
  lease_duration_s`` makes it stop before anyone else may take over;
- on shutdown the holder releases the Lease (clears the holder), so a standby takes over at once.

A standby replica keeps deciding in shadow mode (its observation state stays current, its ``/readyz`` stays
green) and acts only once it leads; ``disaggpilot_controller_leader`` shows which replica leads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from disaggpilot.controller.clock import Clock
from disaggpilot.controller.config import LeaderElectionConfig

if TYPE_CHECKING:  # the client takes most of a second to import: only a running elector loads it
    from kubernetes import client

log = logging.getLogger("disaggpilot.controller.leader")


def micro_time(unix_s: float) -> str:
    """Kubernetes ``MicroTime`` (RFC 3339, microseconds, UTC) of ``unix_s``."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and renews one Lease for ``identity`` (it is the loop's ``Leadership``).

    Args:
        config: lease name and timings.
        namespace: the Lease's namespace.
        identity: this replica's name in ``holderIdentity`` (the pod name).
        api_client: a configured ``kubernetes.client.ApiClient``.
        clock: monotonic time (seconds) for expiry and the renew deadline.
        unix_time: wall time (seconds since the epoch) for the Lease's ``acquireTime``/``renewTime`` fields.
        on_change: called with the new state whenever leadership is gained or lost.
    """

    def __init__(self, config: LeaderElectionConfig, namespace: str, identity: str, api_client: client.ApiClient,
                 clock: Clock, unix_time: Callable[[], float] = time.time,
                 on_change: Callable[[bool], None] | None = None) -> None:
        from kubernetes import client

        self.config, self.namespace, self.identity = config, namespace, identity
        self.api, self.clock, self.unix_time, self.on_change = client.CoordinationV1Api(api_client), clock, \
            unix_time, on_change
        self._leader, self._renewed_at = False, -math.inf
        self._reported: bool | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        """Leader, and the last successful renewal is younger than ``renew_deadline_s``."""
        return self._leader and self.clock.now() - self._renewed_at < self.config.renew_deadline_s

    # ----- one round --------------------------------------------------------------------------------------
    def step(self) -> bool:
        """Try to acquire or renew once; returns :meth:`is_leader` afterwards. Never raises for API failures."""
        try:
            self._try_acquire_or_renew()
        except Exception as error:
            log.warning("leader election: %s: %s", type(error).__name__, str(error)[:200],
                        extra={"fields": {"event": "lease_error", "lease": self.config.lease_name}})
        self._set(self.is_leader())
        return self._leader

    def _try_acquire_or_renew(self) -> None:
        now = self.clock.now()
        try:
            lease = self.api.read_namespaced_lease(self.config.lease_name, self.namespace,
                                                   _request_timeout=self.config.request_timeout_s)
        except Exception as error:
            if getattr(error, "status", None) != 404:
                raise
            self._create(now)
            return
        spec = lease.spec
        version = lease.metadata.resource_version if lease.metadata is not None else None
        holder = spec.holder_identity if spec is not None else None
        record = (holder, str(spec.renew_time) if spec is not None else None, version)
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.lease_duration_seconds or self.config.lease_duration_s) if spec else 0.0
        if holder and holder != self.identity and now < self._observed_at + duration:
            self._leader = False  # someone else holds a live lease
            return
        transitions = int(spec.lease_transitions or 0) if spec is not None else 0
        self._write(version, taking_over=holder != self.identity, transitions=transitions, now=now)

    def _create(self, now: float) -> None:
        body: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",  # the client takes a plain dict
                     "metadata": {"name": self.config.lease_name, "namespace": self.namespace},
                     "spec": self._record(taking_over=True, transitions=-1)}
        self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self.config.request_timeout_s)
        self._leader, self._renewed_at = True, now

    def _write(self, version: str | None, taking_over: bool, transitions: int, now: float) -> None:
        body = {"metadata": {"resourceVersion": version}, "spec": self._record(taking_over, transitions)}
        self.api.patch_namespaced_lease(self.config.lease_name, self.namespace, body,
                                        _request_timeout=self.config.request_timeout_s)
        self._leader, self._renewed_at = True, now

    def _record(self, taking_over: bool, transitions: int) -> dict[str, Any]:
        stamp = micro_time(self.unix_time())
        record: dict[str, Any] = {"holderIdentity": self.identity, "renewTime": stamp,
                                  "leaseDurationSeconds": math.ceil(self.config.lease_duration_s)}
        if taking_over:
            record.update(acquireTime=stamp, leaseTransitions=transitions + 1)
        return record

    def _set(self, leader: bool) -> None:
        changed = leader != self._reported
        self._leader, self._reported = leader, leader
        if changed:
            log.info("%s the leader lease %s/%s as %s", "holding" if leader else "not holding", self.namespace,
                     self.config.lease_name, self.identity,
                     extra={"fields": {"event": "leadership", "leader": leader, "identity": self.identity}})
            if self.on_change is not None:
                self.on_change(leader)

    def release(self) -> None:
        """Give the Lease up (clear its holder) if this replica holds it, so a standby takes over at once."""
        if not self.is_leader():
            return
        try:
            body = {"spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time(
                self.unix_time())}}
            self.api.patch_namespaced_lease(self.config.lease_name, self.namespace, body,
                                            _request_timeout=self.config.request_timeout_s)
        except Exception as error:  # the lease expires on its own; shutting down matters more
            log.warning("could not release the leader lease: %s", error, extra={"fields": {"event": "lease_error"}})
        self._set(False)

    # ----- background renewal -----------------------------------------------------------------------------
    def start(self) -> LeaderElector:
        """Run :meth:`step` every ``retry_period_s`` (real time) in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.config.retry_period_s)

    def stop(self) -> None:
        """Stop renewing and release the Lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.request_timeout_s + self.config.retry_period_s)
        self.release()
