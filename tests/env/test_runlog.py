"""Resolved configs go to the run directory's log, not the terminal, for every Hydra app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from disaggpilot.controller.config import register_configs as register_controller_configs
from disaggpilot.env.catalog import configs_dir
from disaggpilot.env.runlog import REDACTED, RUNLOG, resolved_config
from disaggpilot.env.simulate import register_simulate_configs
from disaggpilot.localcluster.config_store import register_configs as register_loadgen_configs

ROOT = Path(__file__).resolve().parents[2]
APPS = ["simulate", "train", "evaluate", "controller", "loadgen"]


@pytest.mark.parametrize("app", APPS)
def test_every_app_routes_the_runlog_loggers_to_the_file_only(app: str) -> None:
    register_loadgen_configs()  # the schemas the defaults lists name (the environment's among them)
    register_controller_configs()
    register_simulate_configs()
    with initialize_config_dir(version_base=None, config_dir=str(configs_dir()), job_name=app):
        cfg = compose(config_name=app, return_hydra_config=True, overrides=["url=http://x"] if app == "loadgen" else [])
    logging_config = cfg.hydra.job_logging
    assert logging_config.loggers[RUNLOG].handlers == ["file"]
    assert logging_config.loggers[RUNLOG].propagate is False
    assert list(logging_config.root.handlers) == ["console", "file"]


def test_simulate_prints_no_resolved_config_but_its_log_has_it(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from controller.cli import main; main()", "simulate", "duration_s=300",
               f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    terminal = result.stdout + result.stderr
    assert "resolved config" not in terminal and "ttft_slo_s" not in terminal
    assert "tenant" in result.stdout and "summary written to" in result.stdout
    log = (tmp_path / "simulate.log").read_text()
    assert "resolved config:" in log and "ttft_slo_s" in log and "duration_s: 300" in log
    assert len(terminal.splitlines()) < 15, terminal


def test_secrets_are_redacted_from_the_logged_config() -> None:
    cfg = OmegaConf.create({"api_keys": {"chat": "sk-secret"}, "url": "http://gateway", "token": "t0ken"})
    plain = resolved_config(cfg, secrets=("api_keys", "token", "absent"))
    assert plain == {"api_keys": {"chat": REDACTED}, "url": "http://gateway", "token": REDACTED}
    assert "sk-secret" not in str(plain)
    unset = OmegaConf.create({"api_keys": {"chat": "${oc.env:DISAGGPILOT_TEST_UNSET_KEY}"}, "url": "${host}",
                              "host": "http://gateway", "port": "${oc.env:DISAGGPILOT_TEST_UNSET_PORT}"})
    assert resolved_config(unset, secrets=("api_keys",))["api_keys"] == {"chat": REDACTED}  # never read
    assert resolved_config(unset)["port"] == "${oc.env:DISAGGPILOT_TEST_UNSET_PORT}"  # unresolvable: as written
