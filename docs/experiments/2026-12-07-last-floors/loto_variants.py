"""Leave-one-TP-out of ``perf_model: tp-comm`` with other held fields or another fit loss (§3-4 of
2026-12-07-last-floors.md). Run from the repository root::

    python docs/experiments/2026-12-07-last-floors/loto_variants.py held '{"allreduce_half_bytes": 4e6}'
    python docs/experiments/2026-12-07-last-floors/loto_variants.py loss l2

Losses (of the log errors, per phase, summed over phases): ``l1`` (the shipped fit's mean), ``l2`` (root mean
square), ``p4`` (4-norm), ``l1max`` (mean plus a quarter of the largest). p90 is ``benchmarks/fidelity.py``'s
nearest rank.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import fit_tp_perf
from fidelity import load_points, points_parser

from disaggpilot.env.tp_calibration import TpCalibration

LOSSES = {
    "l1": lambda a: float(np.mean(a)),
    "l2": lambda a: float(np.sqrt(np.mean(a**2))),
    "p4": lambda a: float(np.mean(a**4) ** 0.25),
    "l1max": lambda a: float(np.mean(a) + 0.25 * np.max(a)),
}


def fit_with(loss_name: str) -> Callable[..., dict[str, TpCalibration]]:
    aggregate = LOSSES[loss_name]

    def fit(specs: fit_tp_perf.Specs, points: list, restarts: int = 8) -> dict[str, TpCalibration]:
        points = [p for p in points if not fit_tp_perf.beats_roofline(specs, p)]
        layout = fit_tp_perf._layout(sorted({p.hardware for p in points}))

        def loss(vector: np.ndarray) -> float:
            errors = np.abs(fit_tp_perf.log_errors(fit_tp_perf.calibrations(vector, layout), specs, points))
            return aggregate(errors[:, 0]) + aggregate(errors[:, 1])

        x = np.array([fit_tp_perf._encode(name, getattr(fit_tp_perf.START, name)) for _, name in layout])
        for restart in range(restarts):
            x, _ = fit_tp_perf.nelder_mead(loss, x, step=1.0 / (1 + restart), iterations=3000)
        return fit_tp_perf.calibrations(x, layout)

    return fit


def nearest_rank_p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main() -> None:
    kind, value = sys.argv[1], sys.argv[2]
    if kind == "held":
        fit_tp_perf.HELD.update(json.loads(value))
    else:
        fit_tp_perf.fit = fit_with(value)
    args = points_parser(__doc__, 16, "Nelder-Mead restarts").parse_args(sys.argv[3:])
    points, models, gpus = load_points(args)
    specs = {p.hardware: (gpus[p.hardware], models[p.model]) for p in points}
    held_out = fit_tp_perf.leave_one_tp_out(points, specs, args.restarts)
    for phase, column in (("prefill", 0), ("decode", 1)):
        errors = [e[column] for _, scored in held_out.values() for e in scored]
        groups = "; ".join(f"{gpu} tp{tp} {statistics.median([e[column] for e in scored]):.1f} / "
                           f"{nearest_rank_p90([e[column] for e in scored]):.1f}"
                           for (_, gpu, tp), (_, scored) in held_out.items())
        print(f"{kind} {value} held-out {phase}: median {statistics.median(errors):.1f} % p90 "
              f"{nearest_rank_p90(errors):.1f} % ({groups})")


if __name__ == "__main__":
    main()
