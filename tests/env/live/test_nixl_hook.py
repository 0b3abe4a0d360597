"""The replicas' start-up hook (``env/live/nixl_hook``): NIXL's progress-thread delay, set where NIXL's agent is
built, in a fresh interpreter as the launcher starts one.

A stand-in ``nixl_cu12`` package with the shape of NIXL's ``_api`` (a compiled binding ``nixlBind`` whose agent
config the Python agent sets to ``pthrDelay = 0``) shows what the hook changes; the real NIXL, where the vLLM
environment is installed, shows that the thread then stops polling without rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.live.launcher import DELAY_VARIABLE, NIXL_HOOK_DIR, replica_command
from disaggpilot.env.live.launcher_config import LauncherConfig, ReplicaKnobs, VllmSettings
from tests.localcluster.real_vllm_support import missing_reason, vllm_venv

STAND_IN_API = '''
import types

class AgentConfig:
    pthrDelay = -1

def build_agent(name, config):
    return {"name": name, "delay": config.pthrDelay}

nixlBind = types.SimpleNamespace(nixlAgentConfig=AgentConfig, nixlAgent=build_agent, version="1.5.1")

def nixl_agent(name):
    config = nixlBind.nixlAgentConfig()
    config.pthrDelay = 0  # what NIXL's own agent does, whatever its caller asked
    return nixlBind.nixlAgent(name, config)
'''


@pytest.fixture
def stand_in_nixl(tmp_path: Path) -> Path:
    package = tmp_path / "site" / "nixl_cu12"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_api.py").write_text(STAND_IN_API)
    return tmp_path / "site"


def run_python(code: str, environment: dict[str, str], *paths: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with ``environment`` (the hook's), ``paths`` after the hook's folder."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", DELAY_VARIABLE)}
    env.update(environment)
    env["PYTHONPATH"] = os.pathsep.join([env.get("PYTHONPATH", ""), *map(str, paths)]).strip(os.pathsep)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def hook_environment(delay_us: int | None) -> dict[str, str]:
    """What the launcher gives a decode replica, from its own command builder."""
    settings = VllmSettings(python="/opt/vllm/bin/python", model_dir="/models/tiny", nixl_progress_delay_us=delay_us)
    _, env = replica_command(LauncherConfig(kind="vllm", vllm=settings), "decode", 8101, ReplicaKnobs(), index=0)
    return {key: env[key] for key in ("PYTHONPATH", DELAY_VARIABLE) if key in env}


BUILD_AGENT = "import nixl_cu12._api as api; print(api.nixl_agent('probe')['delay'], api.nixlBind.version)"


def test_the_agent_config_carries_the_launchers_delay_and_the_rest_of_the_binding_is_untouched(
        stand_in_nixl: Path) -> None:
    result = run_python(BUILD_AGENT, hook_environment(2500), stand_in_nixl)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2500", "1.5.1"]
    assert "NIXL progress-thread delay 2500 us (nixl_cu12._api)" in result.stderr


def test_without_the_setting_nixl_keeps_its_own_zero_delay(stand_in_nixl: Path) -> None:
    assert hook_environment(None) == {}
    result = run_python(BUILD_AGENT, {"PYTHONPATH": str(NIXL_HOOK_DIR)}, stand_in_nixl)
    assert result.stdout.split() == ["0", "1.5.1"] and "delay" not in result.stderr


def test_a_delay_that_is_not_a_whole_number_is_named_and_nixl_keeps_its_own(stand_in_nixl: Path) -> None:
    result = run_python(BUILD_AGENT, {"PYTHONPATH": str(NIXL_HOOK_DIR), DELAY_VARIABLE: "1ms"}, stand_in_nixl)
    assert result.stdout.split() == ["0", "1.5.1"]
    assert f"{DELAY_VARIABLE}='1ms' is not a whole number of microseconds" in result.stderr


def test_a_sitecustomize_the_hook_shadows_still_runs(stand_in_nixl: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.OTHER_SITE_RAN = True\n")
    code = "import builtins; print(getattr(builtins, 'OTHER_SITE_RAN', False))"
    assert run_python(code, hook_environment(1000), stand_in_nixl, other).stdout.strip() == "True"


def test_the_hook_comes_first_on_the_path_of_prefill_and_decode_replicas_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/srv/site")
    config = LauncherConfig(kind="vllm", vllm=VllmSettings(python="/opt/vllm/bin/python", model_dir="/models/tiny"))
    for role in ("prefill", "decode"):
        _, env = replica_command(config, role, 8101, ReplicaKnobs(), index=0)
        assert env["PYTHONPATH"].split(os.pathsep) == [str(NIXL_HOOK_DIR), "/srv/site"]
        assert env[DELAY_VARIABLE] == "1000"
    _, aggregated = replica_command(config, "aggregated", 8102, ReplicaKnobs(), index=0)
    assert "PYTHONPATH" not in aggregated and DELAY_VARIABLE not in aggregated
    assert (NIXL_HOOK_DIR / "sitecustomize.py").is_file()


@pytest.mark.parametrize("delay_us", [0, 1_000_001])
def test_a_delay_out_of_range_is_refused_with_its_key(delay_us: int) -> None:
    with pytest.raises(ConfigError, match=rf"launcher\.vllm\.nixl_progress_delay_us={delay_us}"):
        VllmSettings(nixl_progress_delay_us=delay_us)


IDLE_AGENT_CPU = """
import time
from nixl._api import nixl_agent, nixl_agent_config
agent = nixl_agent("probe", nixl_agent_config(backends=["UCX"]))
time.sleep(0.5)
start = time.process_time()
time.sleep(2.0)
print((time.process_time() - start) / 2.0)
"""


@pytest.mark.skipif(bool(missing_reason()), reason=missing_reason() or "vLLM environment present")
def test_real_nixls_idle_progress_thread_rests_under_the_hook(tmp_path: Path) -> None:
    """NIXL's own agent at rest: its progress thread used a whole core without the hook (measured 1.0
    CPU-second per second, docs/experiments/2026-12-07-real-vllm-stalls.md), 0.02 with a 1 ms delay."""
    env = {**os.environ, **hook_environment(1000)}
    result = subprocess.run([str(vllm_venv() / "bin" / "python"), "-c", IDLE_AGENT_CPU], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NIXL progress-thread delay 1000 us" in result.stderr
    assert float(result.stdout.split()[-1]) < 0.25, "CPU-seconds per second of an idle agent"
