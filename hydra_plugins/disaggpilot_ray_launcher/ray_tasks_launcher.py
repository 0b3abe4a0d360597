"""``hydra/launcher=ray_tasks``: every job of a Hydra multirun (a ``-m`` sweep, an Optuna sweeper's batch)
becomes one Ray task, on a local Ray or on the cluster named by ``hydra.launcher.address``.

Why not the official ``hydra-ray-launcher`` (1.2.2, its last release): it works with Ray 2.60 locally, but it
requires ``cloudpickle<3`` (for its AWS path only), which downgrades this project's cloudpickle 3.1.3 to
2.2.1; cloudpickle 2.2.1 cannot read what cloudpickle 3 wrote (``AttributeError: Can't get attribute
'_function_setstate'``), and stable-baselines3 saves models with cloudpickle. It also pulls ``ray[default]``
and boto3. The part we need, running a job remotely, is a few Hydra calls, written out here.

A job runs exactly as with Hydra's basic launcher (``hydra.core.utils.run_job``: its own output directory
under ``hydra.sweep.dir``, logging, the job's return value back to the sweeper), only in a Ray worker. On a
local Ray workers start in the driver's working directory, so relative paths behave as usual; on a remote
cluster use absolute paths on shared storage (or ``runtime_env.working_dir``).

No ``from __future__ import annotations`` here: Hydra executes plugin modules before registering them in
``sys.modules``, and dataclasses then cannot resolve string annotations.
"""


import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class RayTasksLauncherConf:
    """Settings of ``hydra/launcher=ray_tasks`` (``hydra.launcher.<field>=...`` on the command line)."""

    _target_: str = "hydra_plugins.disaggpilot_ray_launcher.ray_tasks_launcher.RayTasksLauncher"
    address: str | None = None
    """An existing Ray cluster (``auto``, ``host:6379``, ``ray://host:10001``); null starts a local Ray."""
    num_cpus: int | None = None
    """CPUs of a local Ray (null: every CPU of this machine); ignored with ``address``."""
    cpus_per_job: float = 1.0
    """CPUs reserved per job (fractions allowed); a job's own Ray actors (``vec_env=ray``) need theirs too."""
    max_retries: int = 0
    """Times Ray reruns a job whose worker process died (a job that raises is not retried)."""
    timeout_s: float = 86400.0
    """Longest wait for the whole batch of jobs (seconds); jobs still running then are cancelled and fail."""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    """Ray's ``runtime_env`` for the job workers (``working_dir``, ``env_vars``, ...)."""


ConfigStore.instance().store(group="hydra/launcher", name="ray_tasks", node=RayTasksLauncherConf,
                             provider="disaggpilot")


def _run_job_remotely(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
                      singleton_state: dict[Any, Any]) -> JobReturn:
    """The body of a job's Ray task: restore Hydra's global state, then run the job as Hydra would."""
    setup_globals()
    Singleton.set_state(singleton_state)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class RayTasksLauncher(Launcher):
    """Launches a batch of Hydra jobs as Ray tasks and returns their results in job order."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_job: float = 1.0,
                 max_retries: int = 0, timeout_s: float = 86400.0, runtime_env: Any = None) -> None:
        from disaggpilot.agent.ray_cluster import RayConfig  # checks the settings; Ray itself is imported at launch

        self.settings = RayConfig(address=address, num_cpus=num_cpus, cpus_per_worker=cpus_per_job,
                                  max_restarts=max_retries, timeout_s=timeout_s,
                                  runtime_env=_plain(runtime_env))
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep what every job needs (Hydra calls this once, before the first batch)."""
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit every job of the batch, then wait for all of them (within ``timeout_s``)."""
        from disaggpilot.agent.ray_cluster import connect, import_ray

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        connect(self.settings)
        ray = import_ray()
        remote = ray.remote(_run_job_remotely).options(num_cpus=self.settings.cpus_per_worker,
                                                      max_retries=self.settings.max_restarts)
        log.info("launching %d jobs as Ray tasks", len(job_overrides))
        configs = [self._job_config(overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
        state = Singleton.get_state()
        refs = [remote.remote(self.hydra_context, config, self.task_function, state) for config in configs]
        return self._collect(ray, refs, configs)

    def _job_config(self, overrides: Sequence[str], index: int) -> DictConfig:
        assert self.config is not None and self.hydra_context is not None
        log.info("\t#%d : %s", index, " ".join(filter_overrides(overrides)))
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = f"ray_{index}"
            config.hydra.job.num = index
        return config

    def _collect(self, ray: Any, refs: list[Any], configs: list[DictConfig]) -> list[JobReturn]:
        """Each job's return, in order; a job that timed out or whose worker died returns as failed."""
        deadline = time.monotonic() + self.settings.timeout_s
        returns = []
        for ref, config in zip(refs, configs, strict=True):
            try:
                returns.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as error:
                ray.cancel(ref, force=True)
                returns.append(_failed(config, error))
        return returns


def _failed(config: DictConfig, error: Exception) -> JobReturn:
    """A failed job's return, as Hydra reports one (raised when the sweeper reads its value)."""
    log.error("job %s failed in Ray: %s", config.hydra.job.num, error)
    return JobReturn(overrides=list(config.hydra.overrides.task), cfg=config, hydra_cfg=config,
                     working_dir=str(config.hydra.sweep.dir), task_name=str(config.hydra.job.name),
                     status=JobStatus.FAILED, _return_value=error)


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    assert isinstance(plain, dict)
    return {str(key): value for key, value in plain.items()}
