"""``disaggpilot controller`` as a user runs it: a subprocess on the simulator, with a tiny bundle."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from disaggpilot.agent.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[2]


def command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "disaggpilot.controller.cli", "controller", *overrides]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_a_few_active_decisions_on_the_simulator_exit_cleanly(bundle_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        command(f"controller.bundle={bundle_dir}", "controller.mode=active", "max_decisions=3", "clock=virtual",
                f"controller.expected_hash={load_bundle(bundle_dir).content_hash}",
                "controller.metrics_port=0", f"hydra.run.dir={tmp_path}"),
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = json_lines(result.stdout)
    decisions = [line for line in lines if line["message"] == "decision"]
    assert [d["decision"] for d in decisions] == [1, 2, 3]
    assert all(d["source"] == "policy" and d["applied"] and d["mode"] == "active" for d in decisions)
    assert set(decisions[0]["inputs"]["tenants"]) == {"code", "conv"}  # the steady scenario's tenants
    assert lines[-1]["event"] == "stopped"


def _reader(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _next_decision(lines: queue.Queue[str], seen: list[str]) -> dict[str, Any]:
    while True:
        line = lines.get(timeout=120)
        seen.append(line)
        if line.startswith("{") and json.loads(line)["message"] == "decision":
            return dict(json.loads(line))


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.slow
def test_sigterm_finishes_the_decision_stops_the_server_and_exits_0(bundle_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        command(f"controller.bundle={bundle_dir}", "clock=wall", "clock_speedup=30",
                f"controller.metrics_port={port}", f"hydra.run.dir={tmp_path}"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment())
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        first = _next_decision(lines, seen)
        assert first["mode"] == "shadow" and first["source"] == "policy"
        assert _status(f"http://127.0.0.1:{port}/readyz") == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=30)
    while not lines.empty():
        seen.append(lines.get())
    events = [line.get("event") for line in json_lines("".join(seen))]
    assert "shutdown" in events and events[-1] == "stopped"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
