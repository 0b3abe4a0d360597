"""``disaggpilot loadgen``: the Hydra app over ``configs/loadgen.yaml`` (the load generator is
``localcluster.loadgen``).

The app lives apart from ``localcluster.loadgen`` because registering the structured configs reads the
simulator-facing scenario schema; the load generator itself never imports the simulator.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.errors import PermanentError
from disaggpilot.env.runlog import log_resolved_config
from disaggpilot.localcluster.config_store import register_configs
from disaggpilot.localcluster.loadgen import main as replay

# configs/loadgen.yaml names its schema, and the scenarios theirs: store them before Hydra composes.
register_configs()


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="loadgen")
def main(cfg: DictConfig) -> None:
    """Replay the configured scenario against ``cfg.url`` and print the per-tenant table."""
    log_resolved_config("loadgen", cfg, secrets=("api_keys",))  # keys never reach a file
    try:
        report = replay(cfg)
    except PermanentError as error:
        raise SystemExit(f"disaggpilot loadgen: {error}") from error
    lost = report.counts()["lost"]
    if lost:
        raise SystemExit(f"disaggpilot loadgen: {lost} request(s) lost")
