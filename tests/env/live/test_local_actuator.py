"""The local-process actuator over real emulator processes: scaling, knob changes as rollouts, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disaggpilot.env.backend import Actuator, ClusterAction, PoolTarget
from disaggpilot.env.errors import TemporaryError
from disaggpilot.env.live.launcher import Launcher, ReplicaStartError
from disaggpilot.env.live.launcher_config import EmulatorSettings
from disaggpilot.env.live.local_actuator import LocalProcessActuator
from tests.env.live.test_launcher import START_TIMEOUT_S, rig_config


def listed(launcher: Launcher) -> list[tuple[str, str]]:
    entries = json.loads(Path(launcher.config.discovery_path).read_text())["replicas"]
    return [(entry["name"], entry["state"]) for entry in entries]


def test_targets_scale_pools_and_a_knob_change_rolls_replicas_without_a_gap(tmp_path: Path) -> None:
    with Launcher(rig_config(tmp_path)) as launcher:
        actuator = LocalProcessActuator(launcher)
        assert isinstance(actuator, Actuator)
        actuator.apply(ClusterAction.replicas(prefill=1, decode=1))
        assert launcher.wait_until(lambda: listed(launcher) == [("prefill-0", "ready"), ("decode-0", "ready")],
                                   START_TIMEOUT_S)

        actuator.apply(ClusterAction({"decode": PoolTarget(max_num_seqs=8)}))  # replicas None: keep 1
        fewest_ready_decode = 1

        def rolled() -> bool:
            nonlocal fewest_ready_decode
            states = listed(launcher)
            fewest_ready_decode = min(fewest_ready_decode,
                                      sum(1 for name, state in states if name.startswith("decode") and
                                          state == "ready"))
            return states == [("prefill-0", "ready"), ("decode-1", "ready")]

        assert launcher.wait_until(rolled, START_TIMEOUT_S)
        assert fewest_ready_decode == 1  # the old replica served until the new one was ready
        new = launcher.replicas("decode")[0]
        assert new.knobs.max_num_seqs == 8
        args = list(new.process.args)  # type: ignore[arg-type]
        assert args[args.index("--max-num-seqs") + 1] == "8"
        assert launcher.target("prefill") == (1, launcher.config.knobs["prefill"])

        actuator.apply(ClusterAction.replicas(prefill=0))
        assert launcher.wait_until(lambda: listed(launcher) == [("decode-1", "ready")], START_TIMEOUT_S)


def test_failed_starts_surface_as_a_retryable_error(tmp_path: Path) -> None:
    config = rig_config(tmp_path, emulator=EmulatorSettings(model="no-such-model"))
    with Launcher(config) as launcher:
        actuator = LocalProcessActuator(launcher)
        actuator.apply(ClusterAction.replicas(decode=1))
        assert launcher.wait_until(lambda: bool(launcher.failures), START_TIMEOUT_S)
        with pytest.raises(ReplicaStartError, match="decode-0") as raised:
            actuator.apply(ClusterAction.replicas(decode=1))
        assert isinstance(raised.value, TemporaryError) and raised.value.delay_s == config.restart_backoff_s
