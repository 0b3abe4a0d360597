"""``disaggpilot controller``: the daemon, a Hydra app over ``configs/controller.yaml``.

It reads a cluster through a backend: the simulator (``backend=sim``, the default: shadow and active modes,
the shield, the fallback and the metrics can be exercised anywhere), or a live cluster (``backend=live
env=live env.live.prometheus.url=...``: ``env.live``'s Prometheus source). Actions go to the simulated
cluster (``controller.actuator=backend``), to a log (``dry_run``), to Kubernetes (``kubernetes``:
``env.live.kubernetes``) or to replicas run as local processes (``controller=local``: the controller starts
the scenario's initial replicas through ``env.live.launcher`` and ``env.live.startup`` and stops them on exit;
the local cluster's rig, ``python -m disaggpilot.localcluster.rig``, runs the gateway and Prometheus around them);
with ``controller.leader_election.enabled`` only the holder of a Lease acts (``controller.leader``). For example::

    disaggpilot controller controller.bundle=outputs/train/<run>/bundle                 # shadow mode
    disaggpilot controller controller.bundle=<dir> controller.mode=active   # acts; /metrics on port 9400
    disaggpilot controller max_decisions=5 clock=virtual                                # a quick check
    disaggpilot controller backend=live env=live env.live.prometheus.url=http://prometheus:9090 \
        controller=kubernetes controller.kubernetes.namespace=llm controller.bundle=<dir>  # production

SIGTERM (or Ctrl-C) finishes the decision in progress, stops the HTTP server and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from disaggpilot.agent.policy import environment_for
from disaggpilot.controller.actuators import Actuator, BackendActuator, DryRunActuator
from disaggpilot.controller.clock import Clock, VirtualClock, WallClock
from disaggpilot.controller.config import ControllerConfig, register_configs
from disaggpilot.controller.leader import LeaderElector
from disaggpilot.controller.logs import use_logs
from disaggpilot.controller.loop import ControllerLoop
from disaggpilot.controller.policies import describe, load_policy, make_fallback
from disaggpilot.controller.telemetry import ControllerMetrics, MetricsServer
from disaggpilot.env import errors as env_errors
from disaggpilot.env.backend import ClusterBackend
from disaggpilot.env.catalog import SHIPPED_BUNDLE, configs_dir
from disaggpilot.env.cluster_env import EnvConfig, simulator_factory
from disaggpilot.env.live.backend import LiveBackend, live_backend_factory
from disaggpilot.env.live.config import LiveConfig
from disaggpilot.env.live.kubernetes import KubernetesActuator, bounded_retries
from disaggpilot.env.live.launcher import Launcher
from disaggpilot.env.live.local_actuator import LocalProcessActuator
from disaggpilot.env.live.startup import start_initial_replicas, wait_for_targets
from disaggpilot.env.runlog import log_resolved_config, resolved_config, runlog
from disaggpilot.env.scenario import ScenarioConfig, load_scenario
from disaggpilot.env.structured import build

log = logging.getLogger("disaggpilot.controller")
BACKENDS = ("sim", "live")
CLOCKS = ("wall", "virtual")
PERMANENT = (env_errors.PermanentError, TypeError)
"""What stops the controller at start-up with a one-line message: a permanent error of any package, or a
setting of the wrong type."""


@dataclass
class Settings:
    """Everything the app reads from the composed config, validated."""

    controller: ControllerConfig
    env: EnvConfig
    scenario: ScenarioConfig
    live: LiveConfig | None
    seed: int
    max_decisions: int | None
    clock: Clock


def _container(node: Any) -> dict[str, Any]:
    raw = OmegaConf.to_container(node, resolve=True)
    if not isinstance(raw, dict):
        raise env_errors.ConfigError(f"expected a mapping, got {raw!r}")
    return {str(key): value for key, value in raw.items()}


def settings_from_config(cfg: DictConfig) -> Settings:
    """Validate the composed config: controller, environment layout, scenario, backend and clock."""
    env_errors.require(cfg.backend in BACKENDS, "backend", cfg.backend, f"use one of {BACKENDS}")
    env_errors.require(cfg.clock in CLOCKS, "clock", cfg.clock, f"use one of {CLOCKS}")
    env_errors.require(env_errors.is_number(cfg.clock_speedup) and cfg.clock_speedup > 0, "clock_speedup",
                              cfg.clock_speedup, "use a factor > 0")
    max_decisions = cfg.max_decisions
    env_errors.require(max_decisions is None or (isinstance(max_decisions, int) and max_decisions >= 0),
                              "max_decisions", max_decisions, "use a count >= 0, or null to run until SIGTERM")
    seed = env_errors.require_seed("seed", cfg.seed)
    config = ControllerConfig.from_dict(cfg.controller)
    # checked here, where the daemon starts, not in ControllerConfig: a site's settings validate anywhere
    env_errors.require(config.bundle is None or Path(config.bundle).is_dir(), "controller.bundle",
                       config.bundle, f"no such directory: give a policy bundle directory, e.g. {SHIPPED_BUNDLE}")
    env_errors.require(config.actuator != "local" or cfg.backend == "live", "controller.actuator",
                       config.actuator, "local replicas are read through Prometheus: add backend=live env=live")
    env_raw = _container(cfg.env)
    live = live_settings(cfg.backend, env_raw.pop("live", None), config, cfg.clock)
    clock: Clock = VirtualClock() if cfg.clock == "virtual" else WallClock(clock_speedup(cfg, live))
    env_config = build(EnvConfig, env_raw, "env")
    return Settings(config, env_config, load_scenario(config.scenario), live, seed, max_decisions, clock)


def live_settings(backend: str, raw: dict[str, Any] | None, config: ControllerConfig, clock: str) -> LiveConfig | None:
    """The live backend's settings (``env=live``) when ``backend=live``; None for the simulator."""
    if backend != "live":
        return None
    env_errors.require(raw is not None, "env.live", raw,
                              "compose the live environment: env=live env.live.prometheus.url=<Prometheus URL>")
    env_errors.require(config.actuator != "backend", "controller.actuator", config.actuator,
                              "with backend=live use kubernetes or local (act), or dry_run (log only)")
    env_errors.require(clock == "wall", "clock", clock, "a live cluster runs in wall time: clock=wall")
    assert raw is not None
    live = LiveConfig.from_dict(raw)
    launcher = config.launcher if config.actuator == "local" else None
    if launcher is not None and launcher.kind == "emulator":
        env_errors.require(launcher.emulator.time_scale == live.time_scale, "env.live.time_scale",
                                  live.time_scale, f"read the emulators at their own speed: set it to "
                                  f"controller.launcher.emulator.time_scale={launcher.emulator.time_scale:g}")
    return live


def clock_speedup(cfg: DictConfig, live: LiveConfig | None) -> float:
    """Controller seconds per wall second: ``clock_speedup`` on the simulator; on a live cluster the inverse of
    ``env.live.time_scale``, so the interval, cooldowns and backoff count in the scenario's seconds (1 on a real
    cluster; 4 on an emulated rig whose GPUs run 4x faster)."""
    if live is None:
        return float(cfg.clock_speedup)
    env_errors.require(float(cfg.clock_speedup) == 1.0, "clock_speedup", cfg.clock_speedup,
                              "leave it at 1 with backend=live: a sped-up emulated rig sets env.live.time_scale, "
                              "which the controller's clock follows")
    return 1.0 / live.time_scale


def build_backend(settings: Settings, api_client: Any | None, launcher: Launcher | None = None,
                  fence: Callable[[], bool] | None = None, metrics: ControllerMetrics | None = None) -> ClusterBackend:
    """The simulator, or the live backend whose ``apply`` goes to the configured actuator (``local``: the
    replicas of ``launcher``; ``kubernetes``: fenced by ``fence``, the leader elector's ``is_leader``)."""
    if settings.live is None:
        return simulator_factory(settings.scenario)
    cluster_actuator: Actuator
    if settings.controller.actuator == "local":
        env_errors.require(launcher is not None, "controller.actuator", "local",
                                  "start the launcher first (controller.app.local_replicas)")
        assert launcher is not None
        cluster_actuator = LocalProcessActuator(launcher)
    elif settings.controller.actuator == "dry_run":
        cluster_actuator = DryRunActuator()
    else:
        cluster_actuator = kubernetes_actuator(settings.controller, api_client, fence, metrics)
    return live_backend_factory(settings.live, cluster_actuator)(settings.scenario)


@contextmanager
def local_replicas(settings: Settings) -> Iterator[Launcher | None]:
    """With ``controller.actuator=local``: start the scenario's initial replicas, wait until Prometheus sees
    every pool, and stop every replica on exit. Otherwise nothing (None)."""
    config = settings.controller
    if config.actuator != "local" or settings.live is None:
        yield None
        return
    assert config.launcher is not None  # ControllerConfig checks it
    launcher = Launcher(config.launcher).start()
    try:
        try:
            start_initial_replicas(launcher, settings.scenario, config.launcher.startup_wait_s())
            wait_for_targets(settings.live.prometheus, timeout_s=config.launcher.health_timeout_s)
        except env_errors.DisaggpilotError as error:  # env's own errors and its settings' ConfigError
            raise SystemExit(f"disaggpilot controller: local replicas: {error}") from None
        log.info("local replicas ready", extra={"fields": {"event": "startup", "discovery":
                                                           config.launcher.discovery_path}})
        yield launcher
    finally:
        launcher.close()


def kubernetes_api_client(config: ControllerConfig) -> Any:
    """A ``kubernetes.client.ApiClient`` from ``controller.kubeconfig``, or the pod's service account."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    try:
        if config.kubeconfig:
            kube_config.load_kube_config(config_file=config.kubeconfig, client_configuration=configuration)
        else:
            kube_config.load_incluster_config(client_configuration=configuration)
    except (kube_config.ConfigException, OSError) as error:
        raise env_errors.ConfigError(
            f"controller.kubeconfig={config.kubeconfig!r} is invalid: {error}; run in a pod with a service "
            "account, or point it at a kubeconfig file") from None
    attempts = config.kubernetes.client_attempts if config.kubernetes is not None else 1
    configuration.retries = bounded_retries(attempts)  # urllib3's default would try each call 4 times
    return client.ApiClient(configuration)


def kubernetes_actuator(config: ControllerConfig, api_client: Any | None, fence: Callable[[], bool] | None = None,
                        metrics: ControllerMetrics | None = None) -> KubernetesActuator:
    """The Kubernetes actuator of ``controller.kubernetes``, through ``api_client``, checking ``fence`` before
    every API call and reporting refused knob patches to ``metrics``."""
    assert config.kubernetes is not None  # ControllerConfig checks it
    return KubernetesActuator(config.kubernetes, api_client or kubernetes_api_client(config), fence=fence,
                              on_knobs_refused=metrics.set_knobs_refused if metrics is not None else None)


def build_actuator(config: ControllerConfig, backend: ClusterBackend, api_client: Any | None,
                   fence: Callable[[], bool] | None = None, metrics: ControllerMetrics | None = None) -> Actuator:
    """The configured actuator; ``kubernetes`` patches the workloads through ``api_client``.

    A live backend already holds its cluster actuator: the loop then applies through the backend, which
    also keeps the targets it needs to tell starting from draining replicas.
    """
    if isinstance(backend, LiveBackend) or config.actuator == "backend":
        return BackendActuator(backend)
    if config.actuator == "kubernetes":
        return kubernetes_actuator(config, api_client, fence, metrics)
    return DryRunActuator()


def build_elector(config: ControllerConfig, api_client: Any, clock: Clock,
                  metrics: ControllerMetrics | None) -> LeaderElector | None:
    """The leader elector when ``controller.leader_election.enabled`` (its state drives the leader gauge)."""
    election = config.leader_election
    if not election.enabled:
        return None
    assert config.lease_namespace is not None  # ControllerConfig checks it
    identity = election.identity or os.environ.get("POD_NAME") or socket.gethostname()
    if metrics is not None:
        metrics.set_leader(False)
    return LeaderElector(election, config.lease_namespace, identity, api_client, clock,
                         on_change=metrics.set_leader if metrics is not None else None)


def build_loop(settings: Settings, backend: ClusterBackend, metrics: ControllerMetrics | None,
               leadership: LeaderElector | None = None, api_client: Any | None = None) -> ControllerLoop:
    """The loop over ``backend`` with the configured policy, fallback, actuator and leader election."""
    config = settings.controller
    policy, problem = load_policy(config, settings.scenario, settings.env)
    if problem is not None and config.fallback_only:
        log.info("fallback only: %s", config.fallback.planner, extra={"fields": {"event": "startup"}})
    elif problem is not None:
        log.error("no learned policy: %s", problem.detail, extra={"fields": {"event": "startup",
                                                                           "reason": problem.reason}})
    actuator = build_actuator(config, backend, api_client, leadership.is_leader if leadership is not None else None,
                              metrics)
    log.info("controller starting", extra={"fields": {"event": "startup", "mode": config.mode,
                                                      "actuator": config.actuator,
                                                      "leader_election": config.leader_election.enabled,
                                                      "interval_s": config.interval_s, **describe(policy)}})
    env_config = settings.env if policy is None else environment_for(policy, settings.env)
    return ControllerLoop(config, settings.scenario, env_config, backend, actuator, settings.clock, policy,
                          make_fallback(config), metrics, startup_problem=problem, seed=settings.seed,
                          leadership=leadership)


@contextmanager
def electing(elector: LeaderElector | None) -> Iterator[None]:
    """Keep the leader Lease renewed while the body runs; release it afterwards (a standby takes over)."""
    if elector is None:
        yield
        return
    elector.start()
    try:
        yield
    finally:
        elector.stop()


@contextmanager
def serving(settings: Settings, metrics: ControllerMetrics) -> Iterator[None]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` while the body runs (when a port is configured)."""
    config = settings.controller
    if config.metrics_port == 0:
        yield
        return
    try:
        server = MetricsServer(metrics, settings.clock.now, config.interval_s, config.metrics_host,
                               config.metrics_port).start()
    except OSError as error:
        raise SystemExit(f"disaggpilot controller: cannot serve metrics on {config.metrics_host}:"
                         f"{config.metrics_port} ({error}): set controller.metrics_port to a free port") from None
    log.info("serving metrics", extra={"fields": {"event": "startup", "url": server.url}})
    try:
        yield
    finally:
        server.stop()


def _stop_on_signals(loop: ControllerLoop) -> list[str]:
    """Make SIGTERM and SIGINT stop the loop after its current decision; returns the signals received."""
    received: list[str] = []

    def handle(number: int, _frame: object) -> None:  # only flags: logging is left to the main flow
        received.append(signal.Signals(number).name)
        loop.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return received


def _api_client_if_needed(config: ControllerConfig) -> Any | None:
    needed = config.actuator == "kubernetes" or config.leader_election.enabled
    return kubernetes_api_client(config) if needed else None


# configs/controller/default.yaml names the ControllerConfig schema: store it before Hydra composes.
register_configs()


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="controller")
def main(cfg: DictConfig) -> None:
    """Entry point of ``disaggpilot controller``."""
    # ----- settings: any error here is the operator's to fix; say which key, no traceback, before anything else
    try:
        settings = settings_from_config(cfg)
        metrics = ControllerMetrics(settings.scenario.cluster.enabled_roles(),
                                    [t.name for t in settings.scenario.tenants], settings.controller.mode)
        api_client = _api_client_if_needed(settings.controller)
    except PERMANENT as error:
        raise SystemExit(f"disaggpilot controller: {error}") from None
    if settings.controller.log_format != "text":
        use_logs(settings.controller.log_format)
    if settings.controller.log_format == "text":
        log_resolved_config("controller", cfg)
    else:
        fields = {"event": "config", "config": resolved_config(cfg)}
        runlog("controller").info("resolved config", extra={"fields": fields})
    with local_replicas(settings) as launcher:
        try:
            elector = build_elector(settings.controller, api_client, WallClock(), metrics)
            backend = build_backend(settings, api_client, launcher, elector.is_leader if elector else None, metrics)
            loop = build_loop(settings, backend, metrics, elector, api_client)
        except PERMANENT as error:
            raise SystemExit(f"disaggpilot controller: {error}") from None
        # ----- run until SIGTERM or max_decisions
        received = _stop_on_signals(loop)
        try:
            with serving(settings, metrics), electing(elector):
                decisions = loop.run(settings.max_decisions)
        finally:
            backend.close()
    if received:
        log.info("%s: finished the current decision and stopped the HTTP server", received[0],
                 extra={"fields": {"event": "shutdown"}})
    log.info("controller stopped after %d decisions", decisions, extra={"fields": {"event": "stopped"}})
