"""Start-up through a stalled replica start: the launcher kills a start that never turns healthy and starts it
again, and start-up waits long enough for that second start (real emulator processes on loopback).

The stall is a wrapper around the emulator's interpreter that, on its first run, prints a line and sleeps
instead of serving: what a vLLM start that hangs while loading looks like from outside (alive, silent, no
``/health``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from disaggpilot.env.live.launcher import Launcher
from disaggpilot.env.live.launcher_config import EmulatorSettings, LauncherConfig
from disaggpilot.env.live.startup import ReplicasNotReadyError, start_initial_replicas
from disaggpilot.env.scenario import load_scenario
from tests.localcluster.real_vllm_support import scenario_yaml

STALL_LINE = "loading weights (stalls here)"


def stalling_python(tmp_path: Path, stalls: int) -> Path:
    """An interpreter stand-in whose first ``stalls`` runs hang after printing :data:`STALL_LINE`.

    Each run claims the first free run number with ``mkdir``, which is atomic: replicas started together
    never claim the same number (a counter file read by two at once let both stall)."""
    script = tmp_path / "python-that-stalls"
    runs = tmp_path / "runs"
    runs.mkdir()
    script.write_text(f"""#!/bin/sh
run=0
until mkdir {runs}/$run 2>/dev/null; do run=$((run + 1)); done
if [ "$run" -lt {stalls} ]; then echo "{STALL_LINE}"; exec sleep 600; fi
exec {sys.executable} "$@"
""")
    script.chmod(0o755)
    return script


def launcher_config(tmp_path: Path, stalls: int) -> LauncherConfig:
    """One-replica pools of emulated replicas with a 3 s health limit; the first ``stalls`` starts hang."""
    emulator = EmulatorSettings(python=str(stalling_python(tmp_path, stalls)), max_model_len=512, time_scale=0.05)
    return LauncherConfig(kind="emulator", served_model_name="tiny", log_dir=str(tmp_path / "logs"),
                          poll_interval_s=0.1, health_timeout_s=3.0, restart_backoff_s=0.2, stop_timeout_s=2.0,
                          start_attempts=2, emulator=emulator)


def one_decode_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario_yaml("stall", "chat", aggregated=False, decode_max=1, rate_rps=1.0, step=None,
                                  prompt=8, output=8, duration_s=60.0))
    return path


def test_a_stalled_start_is_killed_and_started_again_within_the_startup_wait(tmp_path: Path) -> None:
    config = launcher_config(tmp_path, stalls=1)
    with Launcher(config) as launcher:
        start_initial_replicas(launcher, load_scenario(one_decode_scenario(tmp_path)), config.startup_wait_s())
        failures = launcher.take_failures()
        assert [failure.reason for failure in failures] == ["not healthy after 3 s"]
        assert STALL_LINE in failures[0].log_tail
        assert sorted(replica.state for replica in launcher.replicas()) == ["ready", "ready"]


def test_start_up_that_stalls_every_time_names_the_replica_and_its_last_log_line(tmp_path: Path) -> None:
    config = launcher_config(tmp_path, stalls=100)
    with Launcher(config) as launcher, pytest.raises(ReplicasNotReadyError) as raised:
        start_initial_replicas(launcher, load_scenario(one_decode_scenario(tmp_path)), timeout_s=2.0)
    message = str(raised.value)
    assert "not ready within 2 s" in message and "still starting: " in message
    assert f"(log ends: '{STALL_LINE}')" in message
    assert str(tmp_path / "logs") in message


def test_start_attempts_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"launcher\.start_attempts=0 is invalid"):
        LauncherConfig(start_attempts=0)
