"""Connecting to Ray: the settings shared by Ray-backed rollouts (``vec_env=ray``) and evaluation
(``launcher=ray``), and a session that starts a local Ray only when no cluster is named.

Ray is imported lazily, so every other command runs without it. With ``ray.address`` unset a private
local Ray is started and stopped again by the session; with an address (``auto``, ``host:6379`` or
``ray://host:10001``) the session joins that cluster and leaves it running. Every wait on Ray carries a
timeout (``timeout_s``), so a lost node surfaces as an error instead of a hang.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from disaggpilot.agent.errors import AgentError, PermanentError, TemporaryError
from disaggpilot.env.errors import require

log = logging.getLogger("disaggpilot.ray")

REACHABLE_TIMEOUT_S = 10.0
"""How long the cluster's port may take to accept a TCP connection before ``ray.init`` is tried (seconds):
``ray.init`` itself retries an unreachable address for minutes."""
QUIET_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0"}
"""Set (unless already set) before Ray starts: no usage-statistics report leaves the machine."""


class RayUnavailableError(AgentError, PermanentError):
    """Ray is not installed, or the configured cluster address cannot be used."""


class RayWorkerError(AgentError, TemporaryError):
    """A Ray actor or task died more often than allowed, or did not answer within ``ray.timeout_s``."""


@dataclass
class RayConfig:
    """Where Ray runs and how much of it a rollout actor or an evaluation task takes (``configs/vec_env/ray``,
    ``configs/launcher/ray``)."""

    address: str | None = None
    """An existing cluster (``auto``, ``host:6379``, ``ray://host:10001``); null starts a local Ray here."""
    num_cpus: int | None = None
    """CPUs a local Ray may use (null: all of this machine's); ignored when ``address`` is set."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per rollout actor or evaluation task (fractions allowed, e.g. 0.5)."""
    envs_per_actor: int = 1
    """Training environments hosted by one rollout actor (they are stepped in turn inside it)."""
    max_restarts: int = 3
    """Restarts allowed per rollout actor, and retries per evaluation task, before the run fails."""
    timeout_s: float = 600.0
    """Longest wait for any one answer from Ray (seconds); longer raises :class:`RayWorkerError`."""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    """Ray's ``runtime_env`` for the workers (e.g. ``working_dir``, ``env_vars``); empty: none."""

    def __post_init__(self) -> None:
        require(self.address is None or bool(str(self.address).strip()), "ray.address", self.address,
                "name a cluster (auto, host:6379, ray://host:10001) or use null for a local Ray")
        require(self.num_cpus is None or self.num_cpus >= 1, "ray.num_cpus", self.num_cpus, "use >= 1 or null")
        require(self.cpus_per_worker > 0, "ray.cpus_per_worker", self.cpus_per_worker, "use > 0 (fractions allowed)")
        require(self.envs_per_actor >= 1, "ray.envs_per_actor", self.envs_per_actor, "use >= 1")
        require(self.max_restarts >= 0, "ray.max_restarts", self.max_restarts, "use >= 0")
        require(self.timeout_s > 0, "ray.timeout_s", self.timeout_s, "use a positive number of seconds")


def import_ray() -> Any:
    """The ``ray`` module, with a message that says how to install it when it is missing."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as error:
        raise RayUnavailableError("ray is not installed: pip install 'disaggpilot[ray]' (or ray==2.60.0)") from error
    return ray


def connect(config: RayConfig) -> bool:
    """Join the configured cluster, or start a local Ray; True when this call started it (and owns it).

    A Ray already initialised in this process (a test's, a Hydra launcher's) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if config.runtime_env:
        options["runtime_env"] = dict(config.runtime_env)
    if config.address is None:
        options["num_cpus"] = config.num_cpus
    else:
        check_reachable(config.address, min(config.timeout_s, REACHABLE_TIMEOUT_S))
    try:
        ray.init(address=config.address, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise RayUnavailableError(f"ray.address={config.address!r}: cannot connect ({error}); start the cluster "
                                  "with `ray start --head` or use ray.address=null for a local Ray") from error
    log.info("ray: %s (%s CPUs)", "local" if config.address is None else config.address,
             ray.cluster_resources().get("CPU", 0))
    return True


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast when nothing accepts connections at a ``host:port`` address (``auto`` is left to Ray)."""
    host, separator, port = address.removeprefix("ray://").rpartition(":")
    if not separator or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise RayUnavailableError(f"ray.address={address!r}: nothing answers at {host}:{port} ({error}); start the "
                                  "cluster with `ray start --head` or use ray.address=null for a local Ray") from error


@contextmanager
def ray_session(config: RayConfig) -> Iterator[Any]:
    """``ray`` connected for the duration of the block; a Ray started here is shut down afterwards."""
    started = connect(config)
    try:
        yield import_ray()
    finally:
        if started:
            import_ray().shutdown()
