"""A live cluster on one machine: replicas, the P/D gateway and Prometheus, on 127.0.0.1, for one scenario.

:class:`LocalCluster` starts, in order: a Prometheus scraping every replica listed in the launcher's discovery
file (file-based service discovery, ``file_sd_configs``, labels ``pool`` and ``replica``) and the gateway
(``job="disaggpilot-gateway"``); the launcher with the scenario's initial prefill/decode replicas (unless a
controller run with ``controller.actuator=local`` owns them); the gateway (a subprocess reading the discovery
file, one API key per tenant generated here and passed through its environment, never written or logged).
It exposes what a controller, ``DisaggClusterEnv`` and the load generator need::

    with LocalCluster(RigConfig(scenario="flash_crowd", time_scale=0.1)) as cluster:
        backend_factory = live_backend_factory(cluster.live_config, cluster.actuator)
        run_loadgen(cluster.loadgen_config(duration_s=600), cluster.config.scenario)

With ``time_scale`` below 1 the emulated GPUs run faster than real ones. The gateway and the launcher work in
wall time, from :attr:`LocalCluster.scenario_path` (the scenario in wall time, see ``localcluster.rig_config``);
readers of the cluster (the controller, ``DisaggClusterEnv``) work in the scenario's own time:
:attr:`LocalCluster.live_config` carries ``time_scale``, so the live backend converts what it reads, and a
policy trained on the scenario sees the rates, latencies and control interval it was trained with.
``python -m disaggpilot.localcluster.rig --scenario X`` runs one until SIGTERM and prints its URLs and the commands
to use it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from disaggpilot.env.catalog import SHIPPED_BUNDLE
from disaggpilot.env.errors import PermanentError, require
from disaggpilot.env.live.config import LiveConfig, PrometheusSourceConfig
from disaggpilot.env.live.launcher import Launcher, ReplicaStartError, free_port
from disaggpilot.env.live.launcher_config import REPLICA_KINDS, LauncherConfig
from disaggpilot.env.live.local_actuator import LocalProcessActuator
from disaggpilot.env.live.startup import start_initial_replicas
from disaggpilot.env.scenario import load_scenario
from disaggpilot.env.trace import repo_root
from disaggpilot.localcluster.loadgen_config import LoadgenConfig
from disaggpilot.localcluster.prometheus_server import PrometheusServer, ScrapeJob, ScrapeTarget
from disaggpilot.localcluster.rig_config import RigConfig, scenario_mapping, write_wall_clock_view

log = logging.getLogger("disaggpilot.rig")
GATEWAY_JOB = "disaggpilot-gateway"
"""Prometheus job of the gateway (the live backend's default gateway selector)."""
REPLICA_JOB = "vllm"
"""Prometheus job of the replicas."""


class RigStartError(ReplicaStartError):
    """The gateway or Prometheus did not come up in time (retryable: ports, a slow machine). The replicas'
    own start raises ``env.live.startup.ReplicasNotReadyError``."""


# ----- Prometheus: replicas found through the discovery file ---------------------------------------------------
@dataclass(frozen=True)
class FileScrapeJob(ScrapeJob):
    """A scrape job whose targets Prometheus reads from JSON files (``file_sd_configs``), re-read on change.

    Attributes:
        files: the target files (``[{"targets": ["host:port"], "labels": {...}}]``).
    """

    files: tuple[str, ...] = ()

    def to_config(self) -> dict[str, Any]:
        """The job with ``file_sd_configs`` instead of static targets."""
        config = super().to_config()
        del config["static_configs"]
        config["file_sd_configs"] = [{"files": list(self.files), "refresh_interval": "5s"}]
        return config


def scrape_targets(discovery: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``file_sd`` targets of a discovery file's replicas: every state, so a replica still loading is a
    target that is down (the live backend counts it as starting)."""
    targets = []
    for replica in discovery.get("replicas", []):
        address = str(replica["url"]).split("://", 1)[-1].rstrip("/")
        targets.append({"targets": [address], "labels": {"pool": replica["role"], "replica": replica["name"]}})
    return targets


class TargetSync:
    """Rewrites the Prometheus target file whenever the discovery file changes (a thread polling it).

    Args:
        discovery: the launcher's discovery file.
        targets: the ``file_sd`` file Prometheus watches.
        poll_s: seconds between checks.
    """

    def __init__(self, discovery: Path, targets: Path, poll_s: float = 0.2) -> None:
        self.discovery, self.targets, self.poll_s = discovery, targets, poll_s
        self._seen: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rig-target-sync", daemon=True)

    def start(self) -> TargetSync:
        """Write the targets once, then follow the discovery file."""
        self.sync()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sync(self) -> bool:
        """Rewrite the targets if the discovery file changed; True when it did."""
        try:
            info = self.discovery.stat()
            stamp = (info.st_mtime_ns, info.st_ino)
            if stamp == self._seen:
                return False
            discovery = json.loads(self.discovery.read_text())
        except (OSError, ValueError):  # missing or being replaced: the next pass reads it
            return False
        _write_atomically(self.targets, json.dumps(scrape_targets(discovery), indent=1))
        self._seen = stamp
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.sync()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# ----- replicas ------------------------------------------------------------------------------------------------
def launcher_settings(base: LauncherConfig, kind: str, scenario: str, time_scale: float, discovery_path: Path,
                      log_dir: Path) -> LauncherConfig:
    """``base`` with the replica ``kind``, the discovery file, the log folder, and the emulated model, GPU,
    tensor-parallel degree, cold start (GPU seconds) and time scale of ``scenario`` (name or path, GPU time)."""
    raw = scenario_mapping(scenario)
    cluster = raw.get("cluster", {})
    tp = int(cluster.get("prefill", {}).get("tp", base.emulator.tensor_parallel))
    emulator = dataclasses.replace(base.emulator, model=str(raw.get("model", base.emulator.model)),
                                   hardware=str(raw.get("hardware", base.emulator.hardware)), tensor_parallel=tp,
                                   time_scale=time_scale,
                                   cold_start_s=float(cluster.get("cold_start_s", base.emulator.cold_start_s)))
    return dataclasses.replace(base, discovery_path=str(discovery_path), log_dir=str(log_dir), emulator=emulator,
                               knobs=dict(base.knobs), kind=kind)


# ----- the cluster ---------------------------------------------------------------------------------------------
class LocalCluster:
    """Replicas, gateway and Prometheus for one scenario, started together and stopped together.

    Args:
        config: what to start.
    """

    def __init__(self, config: RigConfig) -> None:
        self.config = config
        self.workdir = Path(config.workdir) if config.workdir else Path()
        self.launcher: Launcher | None = None
        self.prometheus: PrometheusServer | None = None
        self.gateway_process: subprocess.Popen[bytes] | None = None
        self.gateway_url = ""
        self._sync: TargetSync | None = None
        self._keys: dict[str, str] = {}
        self._temporary = not config.workdir

    # ----- what users of the cluster need ---------------------------------------------------------------------
    @property
    def discovery_path(self) -> Path:
        """The launcher's discovery file (read by the gateway and, through ``file_sd``, Prometheus)."""
        return self.workdir / "discovery.json"

    @property
    def scenario_path(self) -> Path:
        """The scenario in wall time (``rig_config.scaled_scenario``): what the gateway and launcher read."""
        return self.workdir / "scenario.yaml"

    @property
    def api_keys(self) -> dict[str, str]:
        """API key per tenant (secrets: pass them on, never log them)."""
        return dict(self._keys)

    @property
    def prometheus_url(self) -> str:
        """Base URL of the rig's Prometheus."""
        require(self.prometheus is not None, "LocalCluster", "not started", "use it in a with-block")
        assert self.prometheus is not None
        return self.prometheus.url

    @property
    def live_config(self) -> LiveConfig:
        """The ``env=live`` settings reading this cluster (selectors ``pool="<role>"`` and the gateway job) in
        the scenario's time (``time_scale``)."""
        roles = load_scenario(self.scenario_path).cluster.enabled_roles()
        staleness = max(10.0, 20 * self.config.scrape_interval_s)
        return LiveConfig(PrometheusSourceConfig(url=self.prometheus_url, pools={r: f'pool="{r}"' for r in roles},
                                                 gateway=f'job="{GATEWAY_JOB}"', staleness_limit_s=staleness),
                          time_scale=self.config.time_scale)

    @property
    def actuator(self) -> LocalProcessActuator:
        """Applies actions to this cluster's replicas (only when the rig owns them)."""
        require(self.launcher is not None, "rig.own_replicas", self.config.own_replicas,
                "the replicas belong to a controller (actuator=local): start the rig with own_replicas=True")
        assert self.launcher is not None
        return LocalProcessActuator(self.launcher)

    def loadgen_config(self, **fields: Any) -> LoadgenConfig:
        """Load-generator settings for the gateway: URL, keys, served model and time scale, plus ``fields``."""
        settings: dict[str, Any] = {"url": self.gateway_url, "api_keys": self.api_keys,
                                    "model": self.config.launcher.served_model_name,
                                    "time_scale": self.config.time_scale, "progress": False}
        return LoadgenConfig(**{**settings, **fields})

    def controller_overrides(self, interval_s: float = 30.0) -> list[str]:
        """``disaggpilot controller`` overrides for this cluster: live backend reading it in the scenario's time
        (``env.live.time_scale``; the controller's interval, cooldowns and backoff are in scenario seconds),
        and (when the rig does not own the replicas) the local actuator with this rig's discovery file and
        emulator settings."""
        scale = self.config.time_scale
        overrides = ["backend=live", "env=live", f"env.live.prometheus.url={self.prometheus_url}",
                     f"env.live.time_scale={scale:g}", f"controller.scenario={self.config.scenario}",
                     f"controller.interval_s={interval_s:g}",
                     f"controller.fallback.backoff.initial_s={0.1 * interval_s:g}",
                     f"controller.fallback.backoff.max_s={0.2 * interval_s:g}"]
        if self.config.own_replicas:
            return [*overrides, "controller.actuator=dry_run"]
        emulator = self.config.launcher.emulator
        settings = launcher_settings(self.config.launcher, self.config.kind, self.config.scenario, scale,
                                     self.discovery_path, self.workdir / "replicas")
        return [*overrides, "controller=local", f"controller.launcher.kind={self.config.kind}",
                f"controller.launcher.discovery_path={self.discovery_path}",
                f"controller.launcher.log_dir={settings.log_dir}",
                f"controller.launcher.served_model_name={self.config.launcher.served_model_name}",
                f"controller.launcher.emulator.model={settings.emulator.model}",
                f"controller.launcher.emulator.hardware={settings.emulator.hardware}",
                f"controller.launcher.emulator.tensor_parallel={settings.emulator.tensor_parallel}",
                f"controller.launcher.emulator.time_scale={scale:g}",
                f"controller.launcher.emulator.cold_start_s={settings.emulator.cold_start_s:g}",
                f"controller.launcher.emulator.python={emulator.python}"]

    # ----- life cycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LocalCluster:
        """Start everything and wait until it serves; on any failure, stop what was started and raise."""
        try:
            self._prepare()
            self._start_prometheus()
            if self.config.own_replicas:
                self._start_replicas()
            self._start_gateway()
            self._wait_for_scrapes()
        except BaseException:
            self.close()
            raise
        log.info("local cluster up: gateway %s, prometheus %s", self.gateway_url, self.prometheus_url)
        return self

    def close(self) -> None:
        """Stop the gateway, the replicas and Prometheus; remove a temporary work folder. Idempotent."""
        if self.gateway_process is not None:
            _stop_process(self.gateway_process)
            self.gateway_process = None
        if self.launcher is not None:
            self.launcher.close()
            self.launcher = None
        if self._sync is not None:
            self._sync.stop()
            self._sync = None
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None
        if self._temporary and self.workdir != Path() and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _prepare(self) -> None:
        if self._temporary:
            self.workdir = Path(tempfile.mkdtemp(prefix="disaggpilot-rig-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_wall_clock_view(self.config.scenario, self.config.time_scale, self.workdir)
        scenario = load_scenario(self.scenario_path)
        self._keys = {t.name: secrets.token_urlsafe(24) for t in scenario.tenants}
        if not self.discovery_path.exists():
            _write_atomically(self.discovery_path, json.dumps({"replicas": []}))

    def _start_prometheus(self) -> None:
        targets = self.workdir / "replica_targets.json"
        self._sync = TargetSync(self.discovery_path, targets).start()
        self.gateway_port = free_port()
        interval = self.config.scrape_interval_s
        jobs: list[ScrapeJob] = [
            FileScrapeJob(REPLICA_JOB, (), interval_s=interval, files=(str(targets),)),
            ScrapeJob(GATEWAY_JOB, [ScrapeTarget(f"127.0.0.1:{self.gateway_port}")], interval_s=interval)]
        self.prometheus = PrometheusServer(jobs, binary=self.config.prometheus_binary).start()

    def _start_replicas(self) -> None:
        settings = launcher_settings(self.config.launcher, self.config.kind, self.config.scenario,
                                     self.config.time_scale, self.discovery_path, self.workdir / "replicas")
        self.launcher = Launcher(settings).start()
        start_initial_replicas(self.launcher, load_scenario(self.scenario_path), self.config.startup_timeout_s)

    def _start_gateway(self) -> None:
        scenario = load_scenario(self.scenario_path)  # objectives in wall time: the gateway measures wall time
        tenants = [{"name": t.name, "api_key_env": f"DISAGGPILOT_RIG_KEY_{i}", "ttft_slo_s": t.ttft_slo_s,
                    "tpot_slo_s": t.tpot_slo_s, "max_concurrency": self.config.tenant_max_concurrency}
                   for i, t in enumerate(scenario.tenants)]
        gateway = {"tenants": tenants, "host": "127.0.0.1", "port": self.gateway_port,
                   "discovery_file": str(self.discovery_path), "model": self.config.launcher.served_model_name,
                   "replica_wait_s": max(30.0, scenario.cluster.cold_start_s * 2)}
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(gateway, sort_keys=False))
        keys = {f"DISAGGPILOT_RIG_KEY_{i}": self._keys[t.name] for i, t in enumerate(scenario.tenants)}
        with (self.workdir / "gateway.log").open("wb") as log_file:
            self.gateway_process = subprocess.Popen(
                [sys.executable, "-m", "disaggpilot.localcluster.gateway", "--config", str(path),
                 "--log-level", "WARNING"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **keys},
                start_new_session=True)
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self._wait(lambda: _http_ok(self.gateway_url + "/health"), "the gateway to answer /health",
                   self.workdir / "gateway.log")

    def _wait_for_scrapes(self) -> None:
        """Until Prometheus has scraped the gateway and every listed replica at least once."""
        assert self.prometheus is not None
        prometheus = self.prometheus

        def scraped() -> bool:
            discovery = json.loads(self.discovery_path.read_text())
            wanted = {t["targets"][0] for t in scrape_targets(discovery)} | {f"127.0.0.1:{self.gateway_port}"}
            seen = {t["labels"].get("instance") for t in prometheus.targets() if t.get("health") != "unknown"}
            return wanted <= seen

        self._wait(scraped, "Prometheus to scrape every replica and the gateway", None)

    def _wait(self, condition: Any, what: str, log_path: Path | None) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while not condition():
            if self.gateway_process is not None and self.gateway_process.poll() is not None:
                raise RigStartError(f"the gateway exited with {self.gateway_process.returncode}: "
                                    f"{_tail(self.workdir / 'gateway.log')}")
            if time.monotonic() >= deadline:
                tail = f": {_tail(log_path)}" if log_path is not None else ""
                raise RigStartError(f"waited {self.config.startup_timeout_s:.0f} s for {what}{tail}")
            time.sleep(0.1)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""



# ----- command line --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``python -m disaggpilot.localcluster.rig``."""
    parser = argparse.ArgumentParser(prog="python -m disaggpilot.localcluster.rig",
                                     description="Run a local cluster for a scenario (replicas, gateway, Prometheus) "
                                                 "until SIGTERM or Ctrl-C.")
    parser.add_argument("--scenario", default="steady", help="scenario name in configs/scenario/ or YAML path")
    parser.add_argument("--kind", default="emulator", choices=REPLICA_KINDS, help="replica kind")
    parser.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per GPU second (emulator)")
    parser.add_argument("--replicas-by", default="rig", choices=("rig", "controller"),
                        help="who starts the replicas: the rig (scenario's initial ones), or a controller run "
                             "with controller=local (the printed command)")
    parser.add_argument("--workdir", default="", help="folder for discovery file, configs, logs (default: temp)")
    parser.add_argument("--vllm-model-dir", default="", help="kind vllm: the local model folder")
    parser.add_argument("--bundle", default=str(repo_root() / SHIPPED_BUNDLE),
                        help="policy bundle the printed controller command runs (default: the shipped one); "
                             "'none' prints a fallback-only controller")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RigConfig:
    """The rig's settings from parsed arguments."""
    launcher = LauncherConfig(kind=args.kind)
    if args.vllm_model_dir:
        launcher.vllm.model_dir = args.vllm_model_dir
    return RigConfig(scenario=args.scenario, kind=args.kind, time_scale=args.time_scale,
                     own_replicas=args.replicas_by == "rig", workdir=args.workdir, launcher=launcher)


def disaggpilot_command() -> str:
    """How to run ``disaggpilot`` from any shell: the script beside this interpreter (the virtual environment's
    ``bin/``, which need not be on ``PATH``), else this interpreter running the command's module."""
    script = Path(sys.executable).parent / "disaggpilot"
    return str(script) if script.is_file() else f"{sys.executable} -m disaggpilot.controller.cli"


def loadgen_command(cluster: LocalCluster, keys_file: Path) -> str:
    """The load generator's command line for ``cluster``; the keys come from ``keys_file``'s variables."""
    keys = " ".join(f"api_keys.{name}='${{oc.env:DISAGGPILOT_RIG_KEY_{i}}}'"
                    for i, name in enumerate(cluster.api_keys))
    return (f"source {keys_file} && {disaggpilot_command()} loadgen scenario={cluster.config.scenario} "
            f"url={cluster.gateway_url} time_scale={cluster.config.time_scale:g} {keys}")


def controller_command(cluster: LocalCluster, bundle: str) -> str:
    """The controller's command line for ``cluster``, running ``bundle`` (``none``: the fallback alone).

    Active mode runs only a pinned bundle; the command pins it with the hash the shell computes when it runs
    (``python -m disaggpilot.agent.bundle`` prints it), so the command stays one line a user can paste.
    """
    pin = f"controller.expected_hash=$({shlex.quote(sys.executable)} -m disaggpilot.agent.bundle {shlex.quote(bundle)})"
    policy = "controller.fallback_only=true" if bundle == "none" else f"controller.bundle={bundle} {pin}"
    return f"{disaggpilot_command()} controller {' '.join(cluster.controller_overrides())} {policy}"


def usage(cluster: LocalCluster, keys_file: Path, bundle: str = str(repo_root() / SHIPPED_BUNDLE)) -> str:
    """What to run against ``cluster``: URLs, then the load generator and controller commands."""
    return "\n".join([
        f"gateway     {cluster.gateway_url}", f"prometheus  {cluster.prometheus_url}",
        f"discovery   {cluster.discovery_path}", f"scenario    {cluster.scenario_path} (in wall time, for the gateway)",
        f"API keys    {keys_file} (source it; keys are never printed)", "",
        f"load:       {loadgen_command(cluster, keys_file)}",
        f"controller: {controller_command(cluster, bundle)}"])


def write_keys(cluster: LocalCluster) -> Path:
    """The tenants' keys as ``export`` lines in a file only its owner may read."""
    path = cluster.workdir / "api_keys.env"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as keys:
        keys.writelines(f"export DISAGGPILOT_RIG_KEY_{i}={key}\n" for i, key in enumerate(cluster.api_keys.values()))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m disaggpilot.localcluster.rig`` (and ``disaggpilot rig``): serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args = parse_args(argv)
        config = config_from_args(args)
        require(args.bundle == "none" or Path(args.bundle).is_dir(), "--bundle", args.bundle,
                "give a policy bundle directory, or 'none' for a fallback-only controller")
    except PermanentError as error:
        print(f"rig: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with LocalCluster(config) as cluster:
        print(usage(cluster, write_keys(cluster), args.bundle), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
