"""``disaggpilot controller backend=live env=live`` end to end: a subprocess reading the session's real Prometheus.

It lives beside the live backend's tests because it uses their rig (Prometheus scraping recorded vLLM
expositions and a gateway exposition); the controller acts through the dry-run actuator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.env.live.conftest import Rig

ROOT = Path(__file__).resolve().parents[3]


def controller(rig: Rig, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "disaggpilot.controller.cli", "controller", "backend=live", "env=live",
               f"env.live.prometheus.url={rig.prometheus.url}",
               "env.live.prometheus.pools.prefill='pool=\"prefill\",vllm=\"current\"'",
               "env.live.prometheus.pools.decode='pool=\"decode\",vllm=\"current\"'",
               "env.live.prometheus.gateway='job=\"gateway\"'", "controller.actuator=dry_run",
               "controller.interval_s=3", "controller.fallback.backoff.initial_s=0.2",
               "controller.fallback.backoff.max_s=0.4", "controller.metrics_port=0", *overrides,
               f"hydra.run.dir={tmp_path}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def decisions(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "decision"]


@pytest.mark.slow
def test_the_controller_decides_on_a_live_cluster_read_through_prometheus(rig: Rig, tmp_path: Path) -> None:
    rig.wait_for_history(6.0)
    result = controller(rig, tmp_path, "controller.mode=active", "controller.fallback_only=true",
                        "max_decisions=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    made = decisions(result.stdout)
    assert [d["decision"] for d in made] == [1, 2]
    assert set(made[0]["inputs"]["tenants"]) == {"code", "conv"}
    assert "dry run: would set replicas" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_controller_joining_an_slo_period_counts_it_so_far_from_prometheus(rig: Rig, tmp_path: Path) -> None:
    """Started 20 s into the period, the daemon replays the gateway's counters over those seconds in windows of
    its interval (code: 3 met + 1 missed a second, conv: 2 + 0; conftest), so the budgets do not start full.
    The windows are aligned to multiples of the interval, so they may cover up to one interval more or less."""
    rig.wait_for_history(25.0)
    started = datetime.fromtimestamp(time.time() - 20.0, tz=UTC).isoformat()
    result = controller(rig, tmp_path, "controller.mode=active", "controller.fallback_only=true",
                        "max_decisions=1", f"controller.slo_period_start={started}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    joined = [line for line in map(json.loads, filter(lambda x: x.startswith("{"), result.stdout.splitlines()))
              if line.get("event") == "slo_period"]
    assert len(joined) == 1, result.stdout[-3000:]
    elapsed, judged = joined[0]["elapsed_s"], joined[0]["judged"]
    assert 20.0 <= elapsed < 60.0
    covered = judged["code"][0] / 3.0  # seconds of history replayed
    assert elapsed - 3.0 - 2.0 <= covered <= elapsed + 3.0 + 2.0  # controller.interval_s=3, 2 s of slack
    assert judged["code"][1] == pytest.approx(covered, rel=0.15)
    assert judged["conv"] == pytest.approx([2.0 * covered, 0.0], rel=0.15, abs=1e-9)


def test_live_backend_settings_are_checked_before_anything_starts(rig: Rig, tmp_path: Path) -> None:
    with_backend_actuator = controller(rig, tmp_path, "controller.actuator=backend", "max_decisions=1")
    assert with_backend_actuator.returncode != 0
    assert "controller.actuator='backend' is invalid" in with_backend_actuator.stderr
    command = [sys.executable, "-m", "disaggpilot.controller.cli", "controller", "backend=live", "max_decisions=1",
               f"hydra.run.dir={tmp_path / 'no_env'}"]
    without_env = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert without_env.returncode != 0
    assert "env=live" in without_env.stderr
