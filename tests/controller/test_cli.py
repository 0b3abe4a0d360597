"""``disaggpilot``: every bad input on the command line ends in one line naming the key, the value and the fix.

Each case runs the command as a user does (a subprocess through ``controller.cli``) and asserts the whole
error output is that one line, with no traceback and no config printed before it, and a non-zero exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from disaggpilot.controller.cli import unknown_command
from disaggpilot.controller.cli_errors import missing_option

ROOT = Path(__file__).resolve().parents[2]


def disaggpilot(*args: str) -> subprocess.CompletedProcess[str]:
    """``disaggpilot <args>`` in a subprocess, with Hydra's full errors off as a user has them."""
    environment = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "disaggpilot.controller.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=environment)


def only_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the command printed; fails unless it exited non-zero with exactly one line and no traceback."""
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    return output


@pytest.mark.parametrize(("args", "expected"), [
    (["simulate", "duration_s=abc"], "disaggpilot simulate: duration_s='abc' is invalid: use a positive number"),
    (["simulate", "duration_s=-5"], "disaggpilot simulate: duration_s=-5 is invalid"),
    (["simulate", "interval_s=0"], "disaggpilot simulate: interval_s=0 is invalid: use a positive number of seconds"),
    (["simulate", "seed=1.5"], "disaggpilot simulate: seed=1.5 is invalid: use a non-negative integer"),
    (["simulate", "seed=-1"], "disaggpilot simulate: seed=-1 is invalid: use a non-negative integer"),
    (["simulate", "sed=1"], "disaggpilot simulate: sed is not a setting here: did you mean seed?"),
    (["simulate", "scenario.cluster.decode.replicas=abc"],
     "disaggpilot simulate: scenario.cluster.decode.replicas=abc is invalid: Value 'abc' of type 'str' could not"),
    (["simulate", "scenario.cluster.gpu_budgett=3"], "did you mean scenario.cluster.gpu_budget?"),
    (["simulate", "seed=[1"], "disaggpilot simulate: cannot parse the override 'seed=[1'"),
    (["simulate", "-m", "seed=1,2", "--cfg", "job"], "disaggpilot simulate: Only one of --run, --multirun, --cfg"),
    (["evaluate", "env.interval_s=0"], "disaggpilot evaluate: env.interval_s=0.0 is invalid: use a positive interval"),
    (["evaluate", "seeds=[0,1.5]"], "disaggpilot evaluate: seeds[1]=1.5 is invalid: use a non-negative integer"),
    (["evaluate", "duration_s=abc"], "disaggpilot evaluate: duration_s='abc' is invalid"),
    (["train", "run.seed=1.5"], "disaggpilot train: run.seed=1.5 is invalid: use a non-negative integer"),
    (["train", "env.interval_s=abc"], "disaggpilot train: env.interval_s='abc' is invalid: use a number"),
    (["train", "run.progress_bar=maybe"], "disaggpilot train: run.progress_bar='maybe' is invalid: use true or false"),
    (["evaluate", "jobs=abc"], "disaggpilot evaluate: jobs='abc' is invalid"),
    (["evaluate", "env.randomization.load_multiplier=[a,1]"],
     "env.randomization.load_multiplier=['a', 1] is invalid: use a list of numbers"),
    (["controller", "seed=1.5"], "disaggpilot controller: seed=1.5 is invalid: use a non-negative integer"),
    (["controller", "controller.interval_s=0"], "disaggpilot controller: controller.interval_s=0.0 is invalid"),
    (["loadgen", "url=http://127.0.0.1:9", "seed=abc"], "disaggpilot loadgen: seed=abc is invalid"),
])
def test_a_bad_value_is_one_line_naming_key_value_and_fix(args: list[str], expected: str) -> None:
    assert expected in only_line(disaggpilot(*args))


def test_a_missing_scenario_lists_only_the_real_scenarios() -> None:
    line = only_line(disaggpilot("simulate", "scenario=does_not_exist"))
    assert line == ("disaggpilot simulate: scenario='does_not_exist' is not an option of configs/scenario/: use one "
                    "of diurnal, flash_crowd, long_context, noisy_neighbor, shared_prefix, steady")


@pytest.mark.parametrize(("args", "group"), [(["simulate", "scenario=scenario_schema"], "scenario"),
                                             (["simulate", "scenario=schema"], "scenario"),
                                             (["controller", "controller=controller_schema"], "controller")])
def test_a_schema_is_not_selectable_as_a_group_option(args: list[str], group: str) -> None:
    line = only_line(disaggpilot(*args))
    assert f"is not an option of configs/{group}/" in line and "schema" not in line.partition("use one of")[2]


def test_a_bundle_path_that_does_not_exist_is_refused_in_shadow_mode(tmp_path: Path) -> None:
    line = only_line(disaggpilot("controller", f"controller.bundle={tmp_path}/nope", "clock=virtual",
                                 "max_decisions=1"))
    assert f"controller.bundle='{tmp_path}/nope' is invalid: no such directory" in line


def test_active_mode_without_a_bundle_needs_fallback_only(tmp_path: Path) -> None:
    common = ["controller.mode=active", "clock=virtual", "max_decisions=1", "controller.metrics_port=0",
              f"hydra.run.dir={tmp_path}"]
    line = only_line(disaggpilot("controller", *common))
    assert "controller.bundle=None is invalid: active mode needs a policy bundle" in line
    assert "controller.fallback_only=true" in line
    acting = disaggpilot("controller", *common, "controller.fallback_only=true")
    assert acting.returncode == 0, acting.stdout + acting.stderr
    assert '"source":"fallback"' in acting.stdout and '"applied":true' in acting.stdout


def test_a_misspelled_command_gets_a_suggestion() -> None:
    result = disaggpilot("simulat")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == "disaggpilot: unknown command 'simulat'; did you mean simulate?"
    assert unknown_command("xyz").splitlines()[0] == "disaggpilot: unknown command 'xyz'"


def test_a_missing_option_names_the_group_and_its_options() -> None:
    assert missing_option("scenario/nope", ["steady", "diurnal"]) == \
        "scenario='nope' is not an option of configs/scenario/: use one of diurnal, steady"
