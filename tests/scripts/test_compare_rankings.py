"""``scripts/compare_rankings.py``: rankings as the verdict ranks them, and which policies moved."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ["policy", "scenario", "seed", "goodput_tokens", "cost_usd", "attainment/chat", "target/chat"]


def results(path: Path, rows: list[tuple[str, float, float, float]]) -> Path:
    """A results.csv of one scenario and seed: (policy, goodput tokens, cost USD, chat attainment) per row."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for policy, goodput, cost, attainment in rows:
            writer.writerow([policy, "steady", 100, goodput, cost, attainment, 0.95])
    return path


def test_holders_rank_by_tokens_per_dollar_and_a_swap_is_marked(tmp_path: Path) -> None:
    before = results(tmp_path / "before.csv", [("static_tuned", 100.0, 1.0, 0.96), ("learned", 120.0, 1.0, 0.97),
                                                ("planner", 500.0, 1.0, 0.90)])
    after = results(tmp_path / "after.csv", [("static_tuned", 100.0, 1.0, 0.96), ("learned", 90.0, 1.0, 0.97),
                                              ("planner", 500.0, 1.0, 0.90)])
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_rankings.py"), "--before", str(before),
                             "--after", str(after)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert "| 1 | 1.20× ✓ | 2 | 0.90× ✓ |" in rows["learned **(moved)**"]
    assert "| 2 | 1.00× ✓ | 1 | 1.00× ✓ |" in rows["static_tuned **(moved)**"]
    assert "| 3 | 5.00× ✗ -0.050 | 3 | 5.00× ✗ -0.050 |" in rows["planner"]  # a miss ranks last, whatever it earns
