"""Running and watching a controller under test: the ``disaggpilot controller`` subprocess, its ``/metrics``
and the launcher's discovery file sampled in a thread, and a safety net for replicas it leaves behind.

Shared by the proofs that run the controller against the local rig (emulated and real vLLM).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def get_text(url: str, timeout_s: float = 5.0) -> str:
    """The body of a GET, or empty when it fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return str(response.read().decode())
    except OSError:
        return ""


@dataclass
class Sample:
    """One look at the controller and the replicas: seconds since the watch began, the controller's desired
    replicas per pool and decision counters, and the replicas of each role the discovery file lists."""

    at_s: float
    desired: dict[str, float]
    decisions: float
    applied: float
    listed: dict[str, int]


def controller_value(text: str, name: str) -> float:
    """A ``disaggpilot_controller_<name>`` sample without labels (0 when absent)."""
    match = re.search(rf"^disaggpilot_controller_{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def desired_replicas(text: str) -> dict[str, float]:
    """``disaggpilot_controller_desired_replicas`` per pool."""
    found = re.findall(r'^disaggpilot_controller_desired_replicas\{pool="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {pool: float(value) for pool, value in found}


def listed_replicas(discovery: Path) -> dict[str, int]:
    """Replicas per role in the discovery file (every state)."""
    try:
        replicas = json.loads(discovery.read_text())["replicas"]
    except (OSError, ValueError, KeyError):
        return {}
    counts: dict[str, int] = {}
    for replica in replicas:
        counts[replica["role"]] = counts.get(replica["role"], 0) + 1
    return counts


@dataclass
class Watch:
    """Samples the controller's ``/metrics`` and the discovery file every half second, in a thread."""

    metrics_url: str
    discovery: Path
    samples: list[Sample] = field(default_factory=list)
    origin: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="controller-watch", daemon=True)

    def start(self) -> Watch:
        """Begin sampling."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop sampling."""
        self.stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            text = get_text(self.metrics_url, timeout_s=2.0)
            if text:
                self.samples.append(Sample(time.monotonic() - self.origin, desired_replicas(text),
                                           controller_value(text, "decisions_total"),
                                           controller_value(text, "applied_actions_total"),
                                           listed_replicas(self.discovery)))

    def first(self, role: str, count: float, after_s: float = 0.0) -> Sample | None:
        """The first sample after ``after_s`` whose desired replicas of ``role`` equal ``count``."""
        return next((s for s in self.samples if s.at_s >= after_s and s.desired.get(role) == count), None)

    def peak(self, role: str, start_s: float, end_s: float) -> float:
        """The most replicas of ``role`` desired between ``start_s`` and ``end_s`` (0 without samples)."""
        return max((s.desired.get(role, 0.0) for s in self.samples if start_s <= s.at_s <= end_s), default=0.0)



def merge_overrides(*groups: list[str]) -> list[str]:
    """Hydra overrides with later keys replacing earlier ones (Hydra refuses a key given twice)."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            key, _, value = override.partition("=")
            merged[key] = value
    return [f"{key}={value}" for key, value in merged.items()]


@contextmanager
def controller_process(overrides: list[str], log_path: Path, stop_timeout_s: float = 30.0
                       ) -> Iterator[subprocess.Popen[bytes]]:
    """``disaggpilot controller`` with ``overrides``, its output in ``log_path``; on exit SIGTERM, then SIGKILL
    after ``stop_timeout_s``."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "disaggpilot.controller.cli", "controller", *overrides],
                                   cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def kill_orphan_replicas(discovery: Path, module: str) -> None:
    """Safety net for a controller that died without stopping its replicas: SIGKILL the process group of every
    ``python -m <module>`` server still listening on a port of the discovery file (found by its command line)."""
    try:
        ports = {r["url"].rsplit(":", 1)[-1] for r in json.loads(discovery.read_text())["replicas"]}
    except (OSError, ValueError, KeyError):
        return
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = [w.decode(errors="replace") for w in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if module in words and "--port" in words and words[words.index("--port") + 1] in ports:
            try:
                os.killpg(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
