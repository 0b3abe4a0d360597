"""The replica launcher with real emulator processes on loopback, and the vLLM command line it builds."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.live.launcher import Launcher, replica_command
from disaggpilot.env.live.launcher_config import EmulatorSettings, LauncherConfig, ReplicaKnobs, VllmSettings

START_TIMEOUT_S = 30.0


def rig_config(tmp_path: Path, time_scale: float = 0.05, **overrides: Any) -> LauncherConfig:
    """Emulated replicas of the 512-token tiny model, checked every 0.1 s."""
    settings: dict[str, Any] = {
        "kind": "emulator", "served_model_name": "tiny", "discovery_path": str(tmp_path / "replicas.json"),
        "log_dir": str(tmp_path / "logs"), "poll_interval_s": 0.1, "drain_grace_s": 0.3, "health_timeout_s": 30.0,
        "stop_timeout_s": 5.0, "restart_backoff_s": 0.5,
        "emulator": EmulatorSettings(max_model_len=512, time_scale=time_scale), **overrides}
    return LauncherConfig(**settings)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    with Launcher(rig_config(tmp_path)) as running:
        yield running


def discovery(launcher: Launcher) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = json.loads(Path(launcher.config.discovery_path).read_text())["replicas"]
    return entries


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def flag_values(args: list[str]) -> dict[str, str]:
    """``--flag value`` pairs; a flag followed by another flag maps to ``""``."""
    values = {}
    for position, arg in enumerate(args):
        if arg.startswith("--"):
            following = args[position + 1] if position + 1 < len(args) else "--"
            values[arg] = "" if following.startswith("--") else following
    return values


def all_ready(launcher: Launcher, count: int) -> bool:
    states = [entry["state"] for entry in discovery(launcher)]
    return states == ["ready"] * count


def test_replicas_start_health_checked_and_listed_for_the_gateway(launcher: Launcher) -> None:
    launcher.set_target("prefill", 1)
    launcher.set_target("decode", 2)
    listed = discovery(launcher)
    assert [(e["name"], e["role"], e["state"]) for e in listed] == [
        ("prefill-0", "prefill", "starting"), ("decode-0", "decode", "starting"), ("decode-1", "decode", "starting")]
    assert launcher.wait_until(lambda: all_ready(launcher, 3), START_TIMEOUT_S)
    urls = [entry["url"] for entry in discovery(launcher)]
    assert len(set(urls)) == 3 and all(url.startswith("http://127.0.0.1:") for url in urls)
    assert [get(url + "/health")[0] for url in urls] == [200, 200, 200]
    assert "vllm:nixl_xfer_time_seconds" in get(urls[0] + "/metrics")[1]

    processes = [r.process for r in launcher.replicas()]
    launcher.set_target("decode", 1)
    assert launcher.wait_until(lambda: len(discovery(launcher)) == 2, START_TIMEOUT_S)
    assert [e["name"] for e in discovery(launcher)] == ["prefill-0", "decode-0"]  # the newest went first
    assert processes[2].poll() is not None
    assert launcher.drain_all(timeout_s=15)
    assert all(process.poll() == 0 for process in processes)  # every one drained and exited cleanly
    assert discovery(launcher) == []


def test_close_stops_every_process_at_once(tmp_path: Path) -> None:
    launcher = Launcher(rig_config(tmp_path)).start()
    assert discovery(launcher) == []  # written before any replica, for the gateway
    try:
        replicas = [launcher.start_replica("decode"), launcher.start_replica("prefill")]
        assert launcher.wait_until(lambda: all_ready(launcher, 2), START_TIMEOUT_S)
    finally:
        launcher.close()
    assert all(replica.process.poll() is not None for replica in replicas)
    assert discovery(launcher) == [] and launcher.replicas() == []


def test_drain_lets_the_request_in_flight_finish_before_stopping(tmp_path: Path) -> None:
    with Launcher(rig_config(tmp_path, time_scale=0.5)) as launcher:
        replica = launcher.start_replica("aggregated")
        assert launcher.wait_until(lambda: all_ready(launcher, 1), START_TIMEOUT_S)
        answer: dict[str, Any] = {}

        def long_request() -> None:
            body = json.dumps({"prompt": "a b c", "max_tokens": 80}).encode()
            request = urllib.request.Request(replica.url + "/v1/completions", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                answer.update(json.loads(response.read()))
            answer["process_alive_at_answer"] = replica.process.poll() is None

        client = threading.Thread(target=long_request)
        client.start()
        assert launcher.wait_until(lambda: 'num_requests_running{engine="0",model_name="tiny"} 1.0'
                                   in get(replica.url + "/metrics")[1], 10)
        launcher.drain_replica(replica.name)
        assert [e["state"] for e in discovery(launcher)] == ["draining"]
        client.join(timeout=30)
        assert answer["usage"]["completion_tokens"] == 80 and answer["process_alive_at_answer"]
        assert launcher.wait_until(lambda: discovery(launcher) == [], 10)
        assert replica.process.poll() == 0  # the emulator exits cleanly after a drain


def test_a_replica_that_cannot_start_is_reported_and_killed(tmp_path: Path) -> None:
    config = rig_config(tmp_path, emulator=EmulatorSettings(model="no-such-model"))
    with Launcher(config) as launcher:
        replica = launcher.start_replica("decode")
        assert launcher.wait_until(lambda: bool(launcher.failures), START_TIMEOUT_S)
        failure = launcher.take_failures()[0]
        assert failure.name == "decode-0" and "exited with status 2" in failure.reason
        assert "no-such-model" in failure.log_tail
        assert replica.process.poll() is not None and launcher.replicas() == []


def test_vllm_replicas_get_the_recipes_command_line(tmp_path: Path) -> None:
    config = LauncherConfig(kind="vllm", served_model_name="tiny", host="127.0.0.1",
                            vllm=VllmSettings(python="/opt/vllm/bin/python", model_dir=str(tmp_path / "tiny"),
                                              omp_cores=["0", "1"]))
    argv, env = replica_command(config, "prefill", 8101, ReplicaKnobs(4, 2048), index=1)
    assert argv[:3] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = flag_values(argv[3:])
    assert flags["--model"] == str(tmp_path / "tiny") and flags["--served-model-name"] == "tiny"
    assert (flags["--port"], flags["--max-num-seqs"], flags["--max-num-batched-tokens"]) == ("8101", "4", "2048")
    assert flags["--max-model-len"] == "512" and flags["--kv-cache-memory-bytes"] == "134217728"
    assert flags["--enforce-eager"] == "" and flags["--dtype"] == "bfloat16"
    transfer = json.loads(argv[argv.index("--kv-transfer-config") + 1])
    assert transfer == {"kv_connector": "NixlConnector", "kv_role": "kv_both", "kv_buffer_device": "cpu"}
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"
    assert int(env["VLLM_NIXL_SIDE_CHANNEL_PORT"]) > 0 and env["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    aggregated, aggregated_env = replica_command(config, "aggregated", 8102, ReplicaKnobs(), index=0)
    assert "--kv-transfer-config" not in aggregated and "VLLM_NIXL_SIDE_CHANNEL_PORT" not in aggregated_env


def test_a_kv_lease_reaches_the_transfer_config_and_a_too_short_one_is_refused(tmp_path: Path) -> None:
    settings = VllmSettings(python="/opt/vllm/bin/python", model_dir=str(tmp_path / "tiny"), kv_lease_s=6)
    config = LauncherConfig(kind="vllm", served_model_name="tiny", vllm=settings)
    for role in ("prefill", "decode"):
        argv, _ = replica_command(config, role, 8101, ReplicaKnobs(), index=0)
        transfer = json.loads(argv[argv.index("--kv-transfer-config") + 1])
        assert transfer["kv_connector_extra_config"] == {"kv_lease_duration": 6}
    aggregated, _ = replica_command(config, "aggregated", 8102, ReplicaKnobs(), index=0)
    assert "--kv-transfer-config" not in aggregated
    with pytest.raises(ConfigError, match=r"launcher\.vllm\.kv_lease_s=5"):
        VllmSettings(kv_lease_s=5)


def test_vllm_kind_without_a_model_folder_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"launcher\.vllm\.model_dir"):
        Launcher(LauncherConfig(kind="vllm"))
    with pytest.raises(ConfigError, match=r"launcher\.kind"):
        LauncherConfig(kind="docker")
