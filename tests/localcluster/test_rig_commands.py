"""The commands ``disaggpilot rig`` prints run as printed: the executable exists, the load generator's
command composes (its tenants' ``api_keys``), and the controller's composes, validates and runs the bundle.

The rig is prepared (scenario view, keys, discovery file) but its servers are not started: the commands are
checked against its URLs, and ``test_rig_emulated`` runs them against a started rig.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from disaggpilot.agent.analysis import shipped_bundle
from disaggpilot.controller.app import Settings, settings_from_config
from disaggpilot.controller.config import register_configs
from disaggpilot.controller.policies import load_policy
from disaggpilot.env.catalog import configs_dir
from disaggpilot.localcluster.prometheus_server import PrometheusServer
from disaggpilot.localcluster.rig import (
    LocalCluster,
    config_from_args,
    controller_command,
    disaggpilot_command,
    parse_args,
    usage,
    write_keys,
)

ROOT = Path(__file__).resolve().parents[2]


ARGS = ["--scenario", "flash_crowd", "--time-scale", "0.1", "--replicas-by", "controller"]


@pytest.fixture
def cluster(tmp_path: Path) -> LocalCluster:
    """A rig for flash_crowd at time scale 0.1 with its files written (scenario view, keys, discovery file) and
    its URLs set, but no process started."""
    prepared = LocalCluster(config_from_args(parse_args([*ARGS, "--workdir", str(tmp_path)])))
    prepared._prepare()
    prepared.prometheus, prepared.gateway_url = PrometheusServer(), "http://127.0.0.1:8"
    prepared.prometheus.port = 9
    return prepared


@pytest.fixture
def printed(cluster: LocalCluster) -> dict[str, str]:
    """The rig's printed command lines by label (``load``, ``controller``), with its default bundle."""
    lines = usage(cluster, write_keys(cluster), parse_args(ARGS).bundle).splitlines()
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines if line.startswith(("load", "cont"))}


def controller_settings(command: str) -> Settings:
    """The controller's validated settings for a printed ``disaggpilot controller ...`` command line, its words
    as bash gives them to the program (the bundle's pin is a command substitution)."""
    words = subprocess.run(["bash", "-c", f"printf '%s\\n' {command}"], capture_output=True, text=True,
                           check=True, timeout=60).stdout.splitlines()
    register_configs()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return settings_from_config(compose(config_name="controller", overrides=words[2:]))


def test_the_printed_commands_name_an_executable_that_exists(printed: dict[str, str]) -> None:
    executable = shlex.split(disaggpilot_command())[0]
    assert Path(executable).is_file() and os.access(executable, os.X_OK)
    assert printed["controller"].startswith(disaggpilot_command() + " controller ")
    assert f"&& {disaggpilot_command()} loadgen " in printed["load"]


def test_the_printed_load_command_composes_with_the_tenants_keys(printed: dict[str, str]) -> None:
    keys_file, _, command = printed["load"].removeprefix("source ").partition(" && ")
    keys = dict(line.removeprefix("export ").split("=", 1) for line in Path(keys_file).read_text().splitlines())
    result = subprocess.run([*shlex.split(command), "--cfg", "job", "--resolve"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, **keys})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "consumer: " + keys["DISAGGPILOT_RIG_KEY_0"] in result.stdout  # flash_crowd's tenants get their keys


def test_the_printed_controller_command_runs_the_shipped_bundle(printed: dict[str, str]) -> None:
    assert f"controller.bundle={shipped_bundle()}" in shlex.split(printed["controller"])
    assert "controller.expected_hash=$(" in printed["controller"]  # pinned, by the hash of the bundle named
    settings = controller_settings(printed["controller"])
    assert (settings.controller.mode, settings.controller.actuator) == ("active", "local")
    policy, problem = load_policy(settings.controller, settings.scenario, settings.env)
    assert problem is None and policy is not None  # the bundle fits the rig's scenario and interval


def test_a_rig_without_a_bundle_prints_a_fallback_only_controller(cluster: LocalCluster) -> None:
    assert parse_args([]).bundle == str(shipped_bundle())
    settings = controller_settings(controller_command(cluster, parse_args(["--bundle", "none"]).bundle))
    assert settings.controller.fallback_only and settings.controller.bundle is None
