"""``scripts/search_fixed_point.py`` end to end with a tiny budget: one scenario, one seed, ten minutes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_search_scores_each_setting_against_static_tuned(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "search_fixed_point.py"), str(tmp_path / "out"),
               "--seeds", "1000", "--scenarios", "steady", "--duration-s", "600",
               "--grid", "window=4,10", "prefill=0.6", "decode=0.9"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {"static_tuned", "window4_prefill0p6_decode0p9", "window10_prefill0p6_decode0p9"}
    assert "gmean=1.000 steady=1.00(" in lines["static_tuned"]  # the reference against itself
    assert (tmp_path / "out" / "results.csv").is_file()
    again = subprocess.run([*command, "--score-only"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.stdout == result.stdout  # scoring reads results.csv only


def test_the_search_replays_a_trace_window(tmp_path: Path) -> None:
    trace = tmp_path / "ops.csv"
    trace.write_text("timestamp_s,tenant,input_tokens,output_tokens\n"
                     + "".join(f"{t}.0,conv,800,100\n" for t in range(0, 1200)))
    command = [sys.executable, str(ROOT / "scripts" / "search_fixed_point.py"), str(tmp_path / "out"),
               "--seeds", "1000", "--scenarios", "steady", "--duration-s", "600", "--grid", "window=10",
               "--trace", f"path={trace}", "tenant=conv", "start_s=300", "end_s=900"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # the scenario is renamed after the trace, so its results never mix with the synthetic steady's
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert {row["scenario"] for row in rows} == {"steady+ops"} and len(rows) == 2
    bad = subprocess.run([*command[:-3], "start_s"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--trace 'start_s': give key=value pairs" in bad.stderr
