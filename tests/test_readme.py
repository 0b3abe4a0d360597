"""Every command in README.md's fenced ``bash`` blocks runs as written.

Each command falls in one of three kinds, and a command in none of them fails the test (so a new README
command needs a decision here):

- ``RUN``: takes under a minute; run as written in a subprocess, plus the overrides listed (a run directory
  in ``tmp_path``, a free metrics port), and must exit 0.
- ``COVERED``: takes minutes or needs a running rig, cluster or Ray; a named test runs it (or its equivalent
  with a tiny budget), and here Hydra must compose its config (``--cfg all``), so a bad key still fails.
- ``NOT_HYDRA``: ``make`` targets and benchmark scripts, covered by the named check; their files must exist.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from disaggpilot.env.catalog import SHIPPED_BUNDLE
from disaggpilot.env.live.ports import free_port
from disaggpilot.localcluster.rig import parse_args

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DISAGGPILOT = ".venv/bin/disaggpilot"

RUN: dict[str, list[str]] = {
    "disaggpilot simulate scenario=steady": [],
    f"disaggpilot controller controller.bundle={SHIPPED_BUNDLE} clock=virtual": [],
    f"disaggpilot controller controller.bundle={SHIPPED_BUNDLE} controller.mode=active clock=virtual": [],
}
"""Command prefix -> overrides appended besides the run directory and metrics port."""
TRAIN, RAY_ENV, SWEEPS = "tests/agent/test_train.py", "tests/agent/test_ray_vec_env.py", "tests/agent/test_sweeps.py"
COVERED: dict[str, str] = {
    "disaggpilot train run.total_timesteps": f"{TRAIN}::test_train_writes_a_verified_bundle_and_logs_and_resumes",
    "disaggpilot train run.resume_from": f"{TRAIN}::test_train_writes_a_verified_bundle_and_logs_and_resumes",
    "disaggpilot train -m agent.learning_rate": f"{TRAIN}::test_hydra_multirun_sweeps_write_one_bundle_per_job",
    "disaggpilot train vec_env=ray":
        f"{RAY_ENV}::test_train_command_with_vec_env_ray_joins_the_cluster_and_writes_a_bundle",
    "disaggpilot evaluate launcher=ray":
        "tests/agent/test_ray_evaluate.py::test_evaluate_command_with_launcher_ray_writes_the_local_results_csv",
    "disaggpilot train -m hydra/launcher=ray_tasks": f"{SWEEPS}::test_an_optuna_search_runs_its_trials_as_ray_tasks",
    "disaggpilot train -m +sweep=ppo_reward":
        f"{SWEEPS}::test_the_example_sweep_searches_ppo_and_reward_settings_with_optuna_on_ray",
    "disaggpilot evaluate": "tests/agent/test_evaluate.py::test_evaluate_writes_results_summary_timelines_and_plots",
    "disaggpilot controller backend=live env=live":
        "tests/controller/test_kubernetes_wiring.py::test_the_kubernetes_controller_config_composes_and_validates",
    "disaggpilot loadgen":
        "tests/localcluster/test_rig_commands.py::test_the_printed_load_command_composes_with_the_tenants_keys",
    "disaggpilot rig": "tests/localcluster/test_rig_emulated.py::"
                       "test_the_controller_scales_emulated_replicas_through_a_flash_crowd_without_losing_a_request",
}
"""Command prefix -> the test that runs it (or its equivalent with a tiny budget)."""
NOT_HYDRA: dict[str, str] = {
    "make run": "the CI's main-job step (train, then evaluate: the COVERED tests above)",
    "make test": "the CI's test step",
    "python benchmarks/": "benchmarks print measured figures over minutes; tests/env/test_perf.py checks the fits",
}
"""Command prefix -> what covers it."""
PLACEHOLDERS = {"<workdir>": "/tmp/disaggpilot-rig", "<gateway>": "http://127.0.0.1:8", "<run>": "run",
                "<head>": "127.0.0.1"}


def readme_commands() -> list[str]:
    """The commands of README.md's ``bash`` blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def kind(command: str) -> tuple[str, str]:
    """Which kind the command is and its prefix; the longest matching prefix wins."""
    text = command.removeprefix(".venv/bin/").split(" && ")[-1].removeprefix(".venv/bin/")
    matches = [(len(prefix), name, prefix) for name, table in (("run", RUN), ("covered", COVERED),
                                                              ("not_hydra", NOT_HYDRA))
               for prefix in table if text.startswith(prefix)]
    assert matches, f"README command without a kind in tests/test_readme.py: {command}"
    _, name, prefix = max(matches)
    return name, prefix



def arguments(command: str) -> list[str]:
    """The ``disaggpilot`` arguments of ``command``, placeholders filled, a ``source ... &&`` prefix dropped."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command.split(" && ")[-1])
    assert words[0] == DISAGGPILOT, f"run the venv's script, as the README says elsewhere: {command}"
    return words[1:]


def one_job(args: list[str]) -> list[str]:
    """A multirun's arguments as its first job's (``-m`` dropped, each sweep's first value), for ``--cfg``."""
    if "-m" not in args:
        return args
    return [re.sub(r"^([^=\[\]]+=)([^,\[\]]+),.*$", r"\1\2", arg) for arg in args if arg != "-m"]


def disaggpilot(args: list[str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "disaggpilot.controller.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout_s)


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_expects() -> None:
    kinds = [kind(command) for command in COMMANDS]  # fails on a command without a kind
    for table in (RUN, COVERED, NOT_HYDRA):
        unused = set(table) - {prefix for _, prefix in kinds}
        assert not unused, f"tests/test_readme.py lists commands the README no longer has: {sorted(unused)}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c)[0] == "run"])
def test_a_short_readme_command_runs_as_written(command: str, tmp_path: Path) -> None:
    args = arguments(command) + RUN[kind(command)[1]] + [f"hydra.run.dir={tmp_path}"]
    if args[0] == "controller":
        args.append(f"controller.metrics_port={free_port()}")  # 9400, the default, may be taken here
    result = disaggpilot(args)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c)[0] == "covered"])
def test_a_long_readme_command_composes_and_names_its_test(command: str) -> None:
    path, _, name = COVERED[kind(command)[1]].partition("::")
    assert f"def {name}(" in (ROOT / path).read_text(), f"{command}: {path} has no test {name}"
    args = arguments(command)
    if args[0] == "rig":
        parse_args(args[1:])  # argparse exits non-zero on a bad option
        return
    result = disaggpilot([*one_job(args), "--cfg", "all"])
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c)[0] == "not_hydra"])
def test_a_make_target_or_benchmark_exists(command: str) -> None:
    words = shlex.split(command)
    if words[0] == "make":
        assert re.search(rf"^{words[1]}:", (ROOT / "Makefile").read_text(), re.M), command
    else:
        assert (ROOT / words[1]).is_file(), command


def test_the_top_level_help_lists_every_command() -> None:
    result = disaggpilot(["--help"])
    assert result.returncode == 0
    assert all(f"  {name} " in result.stdout for name in ("simulate", "train", "evaluate", "controller", "loadgen",
                                                          "rig"))


def test_a_broken_command_fails_here() -> None:
    broken = ".venv/bin/disaggpilot loadgen url=http://127.0.0.1:8 api_keys=3 seeed=1"
    assert disaggpilot([*arguments(broken), "--cfg", "all"]).returncode != 0


def make_run_commands() -> list[list[str]]:
    """The ``disaggpilot`` arguments of each command in the Makefile's ``run`` recipe, its variables filled with
    their defaults."""
    text = (ROOT / "Makefile").read_text()
    defaults = dict(re.findall(r"^(\w+) \?= (\S+)$", text, re.M))
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe is not None, "the Makefile has no run target"
    lines = recipe.group(1).replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        line = re.sub(r"\$\((\w+)\)", lambda match: defaults.get(match.group(1), ""), line.strip())
        words = shlex.split(line)
        assert words[0].endswith("/disaggpilot"), line
        commands.append(words[1:])
    return commands


def test_make_runs_commands_compose() -> None:
    commands = make_run_commands()
    assert [args[0] for args in commands] == ["train", "evaluate"]
    composed = [disaggpilot([*args, "--cfg", "job"]) for args in commands]
    for args, result in zip(commands, composed, strict=True):
        assert result.returncode == 0, f"make run: {args}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    assert "action_mode: headroom" in composed[0].stdout  # it starts from the validated fixed point, not scratch
