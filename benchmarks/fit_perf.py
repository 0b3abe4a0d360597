"""Fit the performance model's calibration per GPU type to measured iteration times (docs/architecture.md).

Reads a CSV in the format of Splitwise's ``perf_model.csv`` (default: the repository's
``data/calibration/splitwise_perf_model.csv``, Llama-2-70B on A100-80GB at TP 2/4/8 and H100 at TP 2/4),
and for each GPU type fits every :class:`~env.catalog.PerfCalibration` field. It prints the fitted values as YAML
to paste into ``configs/hardware/<name>.yaml``. numpy only: a Nelder-Mead search on transformed parameters
(sigmoid for efficiencies, so they stay in (0, 1); exp for overheads, so they stay >= 0) minimising
mean |log(predicted / measured)| of prefill plus that of decode. The absolute (L1) loss keeps a few
anomalous rows (the batch-64 prefills at TP 2 are ~10x faster than batch 32) from dragging the fit.

Usage::

    python benchmarks/fit_perf.py [--points FILE] [--configs DIR] [--restarts N]
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from collections.abc import Callable

import numpy as np
from fidelity import Point, load_points, pct_error, perf_model, points_parser, predict_ms

from disaggpilot.env.catalog import GpuSpec, ModelSpec, PerfCalibration

FRACTIONS = ("prefill_compute_efficiency", "decode_memory_efficiency", "decode_compute_efficiency",
             "link_efficiency")
"""Calibration fields that are fractions in (0, 1]: fitted through a sigmoid."""
NAMES = tuple(f.name for f in dataclasses.fields(PerfCalibration))
"""Every calibration field, in declaration order; those not in FRACTIONS are >= 0, fitted through exp."""
HELD = {
    # Vidur's profiles: a one-token step reaches about 75-80% of HBM bandwidth. Splitwise's decode times
    # cannot separate this from the fixed and per-all-reduce overheads (the loss moves < 1% between 0.7
    # and 1.0), and a value of 1 would put decode exactly on the bandwidth roofline.
    "decode_memory_efficiency": 0.8,
    # Vidur's all-reduce profiles: an 8 MiB all-reduce at TP 2/4/8 moves its ring bytes at 0.39-0.58 of
    # the measured send/recv bandwidth (A100 and H100 DGX). Splitwise's times barely depend on it.
    "link_efficiency": 0.5,
}
"""Fields held at independently measured values instead of fitted (``--fit-all`` fits them too)."""
START = PerfCalibration(prefill_compute_efficiency=0.5, tp_efficiency_exponent=0.2, prefill_overhead_s=0.01,
                        decode_memory_efficiency=0.8, decode_compute_efficiency=0.3, decode_overhead_s=0.01,
                        allreduce_latency_s=2e-5, link_efficiency=0.5)
"""Where the search starts: mid-range values, fixed so the fit does not depend on the catalog's defaults."""


def to_vector(calibration: PerfCalibration, names: tuple[str, ...]) -> np.ndarray:
    """Unconstrained coordinates of ``names`` in ``calibration`` (logit of fractions, log of the rest)."""
    values = []
    for name in names:
        value = float(getattr(calibration, name))
        if name in FRACTIONS:
            value = min(max(value, 1e-4), 1.0 - 1e-4)
            values.append(np.log(value / (1.0 - value)))
        else:
            values.append(np.log(max(value, 1e-9)))
    return np.array(values)


def from_vector(vector: np.ndarray, names: tuple[str, ...], held: dict[str, float]) -> PerfCalibration:
    """The calibration with ``names`` at coordinates ``vector`` and the rest at ``held``."""
    values = dict(held)
    for name, z in zip(names, vector, strict=True):
        values[name] = float(1.0 / (1.0 + np.exp(-z))) if name in FRACTIONS else float(np.exp(z))
    return PerfCalibration(**values)


def log_errors(calibration: PerfCalibration, gpu: GpuSpec, model: ModelSpec, points: list[Point]
               ) -> tuple[np.ndarray, np.ndarray]:
    """log(predicted / measured) of prefill and of decode for every point."""
    gpu = dataclasses.replace(gpu, calibration=calibration)
    perfs = {tp: perf_model(model, gpu, tp) for tp in {p.tp for p in points}}
    predicted = np.array([predict_ms(perfs[p.tp], p) for p in points])
    measured = np.array([(p.prefill_ms, p.decode_ms) for p in points])
    ratios = np.log(predicted / measured)
    return ratios[:, 0], ratios[:, 1]


def nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float = 0.5,
                iterations: int = 1500, tolerance: float = 1e-7) -> tuple[np.ndarray, float]:
    """Minimise ``f`` from ``x0`` with the Nelder-Mead simplex (standard coefficients); return (x, f(x))."""
    simplex = np.vstack([x0] + [x0 + step * np.eye(len(x0))[i] for i in range(len(x0))])
    values = np.array([f(x) for x in simplex])
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = simplex[order], values[order]
        if values[-1] - values[0] < tolerance:
            break
        centroid = simplex[:-1].mean(axis=0)
        reflected = centroid + (centroid - simplex[-1])
        f_reflected = f(reflected)
        if f_reflected < values[0]:
            expanded = centroid + 2.0 * (centroid - simplex[-1])
            f_expanded = f(expanded)
            simplex[-1], values[-1] = (expanded, f_expanded) if f_expanded < f_reflected \
                else (reflected, f_reflected)
        elif f_reflected < values[-2]:
            simplex[-1], values[-1] = reflected, f_reflected
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            f_contracted = f(contracted)
            if f_contracted < values[-1]:
                simplex[-1], values[-1] = contracted, f_contracted
            else:  # shrink towards the best vertex
                simplex[1:] = simplex[0] + 0.5 * (simplex[1:] - simplex[0])
                values[1:] = [f(x) for x in simplex[1:]]
    best = int(np.argmin(values))
    return simplex[best], float(values[best])


def fit(gpu: GpuSpec, model: ModelSpec, points: list[Point], held: dict[str, float],
        restarts: int = 16) -> PerfCalibration:
    """Fit ``gpu``'s calibration, but for the ``held`` fields, to ``points``.

    The search starts at :data:`START` and restarts ``restarts`` times around the best point so far with a
    smaller step: a simplex can stall on the flat valley between ``prefill_compute_efficiency`` and
    ``tp_efficiency_exponent``.
    """
    names = tuple(name for name in NAMES if name not in held)

    def loss(vector: np.ndarray) -> float:
        prefill, decode = log_errors(from_vector(vector, names, held), gpu, model, points)
        return float(np.mean(np.abs(prefill)) + np.mean(np.abs(decode)))

    x = to_vector(START, names)
    for restart in range(restarts):
        x, _ = nelder_mead(loss, x, step=1.0 / (1 + restart))
    return from_vector(x, names, held)


def report(hardware: str, calibration: PerfCalibration, gpu: GpuSpec, model: ModelSpec,
           points: list[Point], held: dict[str, float]) -> None:
    """Print the fitted calibration as YAML, with the fit's median errors as a comment."""
    fitted = dataclasses.replace(gpu, calibration=calibration)
    perfs = {tp: perf_model(model, fitted, tp) for tp in {p.tp for p in points}}
    errors = [(pct_error(pre, p.prefill_ms), pct_error(dec, p.decode_ms))
              for p in points for pre, dec in [predict_ms(perfs[p.tp], p)]]
    prefill, decode = (statistics.median(e[i] for e in errors) for i in (0, 1))
    print(f"# {hardware}: fitted on {len(points)} configurations of {model.name}, tp "
          f"{sorted({p.tp for p in points})}; median abs error prefill {prefill:.1f}%, decode {decode:.1f}%")
    print("calibration:")
    for name in NAMES:
        note = "  # held, not fitted (see HELD in benchmarks/fit_perf.py)" if name in held else ""
        print(f"  {name}: {float(getattr(calibration, name)):.4g}{note}")


def main(argv: list[str] | None = None) -> int:
    """Fit every GPU type in the points file; return the exit status."""
    parser = points_parser(__doc__, 16, "Nelder-Mead restarts per GPU type")
    parser.add_argument("--fit-all", action="store_true", help=f"also fit the held fields {sorted(HELD)}")
    args = parser.parse_args(argv)
    loaded = load_points(args)
    if loaded is None:
        return 2
    points, models, gpus = loaded
    for hardware in sorted(gpus):
        for model_name in sorted({p.model for p in points if p.hardware == hardware}):
            subset = [p for p in points if p.hardware == hardware and p.model == model_name]
            held = {} if args.fit_all else HELD
            calibration = fit(gpus[hardware], models[model_name], subset, held, args.restarts)
            report(hardware, calibration, gpus[hardware], models[model_name], subset, held)
    return 0


if __name__ == "__main__":
    sys.exit(main())
