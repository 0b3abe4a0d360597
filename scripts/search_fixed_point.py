"""Search the headroom sizer's fixed points for one setting that holds every tenant's target on every
scenario, on seeds other than the evaluation seeds, and earns the most tokens/$ against ``static_tuned``.

It runs ``disaggpilot evaluate`` on batches of ``headroom_planner`` settings (plus ``static_tuned`` as the
reference) and prints, per setting, the worst margin of a tenant's attainment over its target and the
geometric mean over scenarios of its tokens/$ ratio to ``static_tuned``. Usage::

    python scripts/search_fixed_point.py OUT_DIR --seeds 1000 1001 1002 1003 1004 \
        --grid window=4,10,20 prefill=0.6,0.75,0.85 decode=0.6,0.75,0.9 statistic=peak

On a trace window (``disaggpilot evaluate``'s ``trace.*``; search on the window you train on, judge later)::

    python scripts/search_fixed_point.py OUT_DIR --scenarios noisy_neighbor \
        --trace path=data/traces/azure2023_conv.csv start_s=0 end_s=1680 --grid window=10 prefill=0.6,0.75

Every run is reproducible from its command line: the simulator is seeded per episode.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

KEYS = {"window": "demand_window_intervals", "prefill": "prefill_utilization", "decode": "decode_utilization",
        "statistic": "demand_statistic", "quantile": "demand_quantile", "pfloor": "prefill_floor",
        "dfloor": "decode_floor"}
SCENARIOS = ["steady", "diurnal", "flash_crowd", "long_context", "noisy_neighbor"]


def settings_grid(grid: list[str]) -> list[dict[str, str]]:
    """Every combination of ``name=v1,v2`` axes."""
    axes = [(name, values.split(",")) for name, values in (axis.split("=", 1) for axis in grid)]
    return [dict(zip([name for name, _ in axes], combo, strict=True))
            for combo in itertools.product(*[values for _, values in axes])]


def label(setting: dict[str, str]) -> str:
    return "h_" + "_".join(f"{name}{value}".replace(".", "p") for name, value in setting.items())


def trace_overrides(trace: list[str]) -> list[str]:
    """``key=value`` pairs as ``disaggpilot evaluate``'s ``trace.key=value`` overrides."""
    for pair in trace:
        if "=" not in pair:
            raise SystemExit(f"--trace {pair!r}: give key=value pairs, e.g. path=data/traces/azure2023_conv.csv")
    return [f"trace.{pair}" for pair in trace]


def evaluate(settings: list[dict[str, str]], seeds: list[str], scenarios: list[str], out: Path, jobs: int,
             duration_s: float | None = None, trace: list[str] | None = None) -> Path:
    """One ``disaggpilot evaluate`` over ``settings`` and ``static_tuned`` (replaying ``trace``'s ``key=value``
    window when given); its results.csv."""
    overrides = []
    for setting in settings:
        name = label(setting)
        overrides.append(f"+policy@policies.{name}=headroom_planner")
        overrides += [f"policies.{name}.{KEYS[key]}={value}" for key, value in setting.items()]
    names = ["static_tuned"] + [label(s) for s in settings]
    command = [str(Path(sys.executable).parent / "disaggpilot"), "evaluate", f"scenarios=[{','.join(scenarios)}]",
               f"seeds=[{','.join(seeds)}]", f"only=[{','.join(names)}]", f"jobs={jobs}", "plots=false",
               "verdict.upper=null", f"hydra.run.dir={out}", *trace_overrides(trace or []), *overrides]
    if duration_s is not None:
        command.append(f"duration_s={duration_s:g}")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out / "results.csv"


def score(results: Path) -> list[tuple[str, float, float, dict[str, tuple[float, float]]]]:
    """(policy, worst attainment margin, geometric-mean tok/$ ratio, (ratio, worst margin) per scenario), the
    settings that hold everywhere first, then by the geometric mean."""
    rows = list(csv.DictReader(results.open()))
    tokens: dict[tuple[str, str], list[float]] = defaultdict(list)
    margin: dict[tuple[str, str], float] = defaultdict(lambda: math.inf)
    for row in rows:
        cell = row["policy"], row["scenario"]
        tokens[cell].append(float(row["goodput_tokens_per_usd"]))
        margins = [float(row[key]) - float(row["target/" + key.split("/", 1)[1]])
                   for key in row if key.startswith("attainment/") and row[key] != ""]
        margin[cell] = min(margin[cell], *margins)
    scenarios = sorted({s for _, s in tokens})
    table = []
    for policy in sorted({p for p, _ in tokens}):
        cells = {s: (sum(tokens[policy, s]) / sum(tokens["static_tuned", s]), margin[policy, s]) for s in scenarios}
        geometric = math.exp(sum(math.log(ratio) for ratio, _ in cells.values()) / len(cells))
        table.append((policy, min(m for _, m in cells.values()), geometric, cells))
    return sorted(table, key=lambda entry: (entry[1] < 0, -entry[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", default=["1000", "1001", "1002", "1003", "1004"])
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    parser.add_argument("--grid", nargs="+", default=[])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--duration-s", type=float, default=None, help="simulated seconds per episode (smoke runs)")
    parser.add_argument("--trace", nargs="+", default=[], metavar="KEY=VALUE",
                        help="replay a trace window: evaluate's trace.KEY=VALUE (path, start_s, end_s, ...)")
    parser.add_argument("--score-only", action="store_true", help="score OUT/results.csv again, run nothing")
    args = parser.parse_args()
    results = args.out / "results.csv" if args.score_only else \
        evaluate(settings_grid(args.grid), args.seeds, args.scenarios, args.out, args.jobs, args.duration_s,
                 args.trace)
    for policy, worst, geometric, ratios in score(results):
        cells = " ".join(f"{s[:6]}={r:.2f}({m:+.3f})" for s, (r, m) in ratios.items())
        print(f"{policy.removeprefix('h_'):48s} worst={worst:+.3f} gmean={geometric:.3f} {cells}")


if __name__ == "__main__":
    main()
