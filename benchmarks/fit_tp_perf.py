"""Fit the ``tp-comm`` performance model (``env.perf_tp``) jointly over every GPU type and TP.

Reads the same CSV as ``benchmarks/fit_perf.py`` (default ``data/calibration/splitwise_perf_model.csv``) and
prints one ``tp_calibration:`` block per GPU type to paste into ``configs/hardware/<name>.yaml``. Unlike
``fit_perf.py``, which fits each GPU type alone, this fit is joint: the :data:`SHARED` fields (how
efficiency falls with TP, the all-reduce latency and the compute/communication overlap) take one value for
every GPU type, so a GPU type measured at one TP only still gets a TP scaling learnt from the others. The
loss and search are ``fit_perf.py``'s: mean |log(predicted / measured)| per phase, Nelder-Mead with restarts.

Usage::

    python benchmarks/fit_tp_perf.py [--points FILE] [--configs DIR] [--restarts N]
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from fidelity import Point, load_points, perf_model, points_parser, predict_ms
from fit_perf import nelder_mead

from disaggpilot.env.catalog import GpuSpec, ModelSpec
from disaggpilot.env.tp_calibration import FRACTIONS, UNIT_INTERVAL, TpCalibration

NAMES = tuple(f.name for f in dataclasses.fields(TpCalibration))
"""Every tp_calibration field, in declaration order."""
SHARED = ("linear_tp_exponent", "attention_tp_exponent", "allreduce_half_bytes", "comm_overlap",
          "link_efficiency")
"""Fields with one value for every GPU type: software and scaling behaviour, not a chip's rates."""
HELD = {
    # Vidur's profiles: a one-token step reaches about 75-80% of HBM bandwidth (as fit_perf.py holds it).
    "decode_weight_efficiency": 0.8,
    # vLLM's tensor-parallel layers (2023) all-reduce on the compute stream after each row-parallel matmul
    # and wait for it: nothing overlaps. Fitted, it drifts to 0.3-0.46 and trades off against the TP
    # scaling, which then extrapolates worse (held-out prefill p90 19.5 % against 15.3 %).
    "comm_overlap": 0.0,
    # Fitted in [0, 1] it lands on the bound (0.9997 and 1.0000 in the two leave-one-TP-out refits).
    "attention_tp_exponent": 1.0,
}
"""Fields held at independently measured or physically argued values instead of fitted."""
START = TpCalibration(linear_efficiency=0.6, linear_tp_exponent=0.1, attention_efficiency=0.3,
                      attention_tp_exponent=1.0, prefill_overhead_s=0.02, decode_weight_efficiency=0.8,
                      decode_kv_efficiency=0.5, decode_compute_efficiency=0.3, decode_overhead_s=0.01,
                      allreduce_half_bytes=5e6, link_efficiency=0.5, comm_overlap=0.0,
                      cross_sequence_pair_fraction=0.5)
"""Where the search starts (fixed, so the fit does not depend on the catalog)."""
Specs = dict[str, tuple[GpuSpec, ModelSpec]]
"""GPU name -> (its spec, the model measured on it)."""


def _encode(name: str, value: float) -> float:
    if name in FRACTIONS or name in UNIT_INTERVAL:
        value = min(max(value, 1e-4), 1.0 - 1e-4)
        return float(np.log(value / (1.0 - value)))
    return float(np.log(max(value, 1e-9)))


def _decode(name: str, z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z))) if name in FRACTIONS or name in UNIT_INTERVAL else float(np.exp(z))


def _layout(gpus: list[str]) -> list[tuple[str | None, str]]:
    """(GPU or None for shared, field) of each coordinate of the search vector."""
    own = [name for name in NAMES if name not in SHARED and name not in HELD]
    return [(None, name) for name in SHARED if name not in HELD] + [(gpu, name) for gpu in gpus for name in own]


def calibrations(vector: np.ndarray, layout: list[tuple[str | None, str]]) -> dict[str, TpCalibration]:
    """Each GPU type's calibration at search coordinates ``vector``."""
    shared = {name: _decode(name, z) for (gpu, name), z in zip(layout, vector, strict=True) if gpu is None}
    values: dict[str, dict[str, float]] = {}
    for (gpu, name), z in zip(layout, vector, strict=True):
        if gpu is not None:
            values.setdefault(gpu, {**HELD, **shared})[name] = _decode(name, z)
    return {gpu: TpCalibration(**fields) for gpu, fields in values.items()}


def log_errors(cals: dict[str, TpCalibration], specs: Specs, points: list[Point]) -> np.ndarray:
    """log(predicted / measured), rows (prefill, decode) per point."""
    perfs = {(g, tp): perf_model(specs[g][1], dataclasses.replace(specs[g][0], tp_calibration=cals[g]), tp,
                                 "tp-comm") for g, tp in {(p.hardware, p.tp) for p in points}}
    predicted = np.array([predict_ms(perfs[(p.hardware, p.tp)], p) for p in points])
    return np.log(predicted / np.array([(p.prefill_ms, p.decode_ms) for p in points]))


def beats_roofline(specs: Specs, point: Point) -> bool:
    """Whether ``point``'s measured prefill is faster than peak FLOP/s and HBM bandwidth allow: not a
    measurement of what it says. Splitwise's TP 2 batches of 64 x 512 tokens (A100 794 ms, H100 361 ms,
    against 6.6 s and 2.4 s for 32) are: their end-to-end times are 8.6 x batch 32's, so those runs
    evidently did not prefill the whole batch at once (64 x 640 tokens of KV do not fit beside 138 GB
    of weights on 2 x 80 GB)."""
    gpu, model = specs[point.hardware]
    tokens = point.batch_size * point.prompt_size
    floor_s = perf_model(model, gpu, point.tp).roofline_prefill_time(tokens, tokens * point.prompt_size / 2.0)
    return 1e3 * floor_s > point.prefill_ms


def fit(specs: Specs, points: list[Point], restarts: int = 8) -> dict[str, TpCalibration]:
    """Fit every GPU type of ``points`` jointly, less those that :func:`beats_roofline`; return GPU name
    -> calibration."""
    points = [p for p in points if not beats_roofline(specs, p)]
    layout = _layout(sorted({p.hardware for p in points}))

    def loss(vector: np.ndarray) -> float:
        errors = log_errors(calibrations(vector, layout), specs, points)
        return float(np.mean(np.abs(errors[:, 0])) + np.mean(np.abs(errors[:, 1])))

    x = np.array([_encode(name, getattr(START, name)) for _, name in layout])
    for restart in range(restarts):
        x, _ = nelder_mead(loss, x, step=1.0 / (1 + restart), iterations=3000)
    return calibrations(x, layout)


def leave_one_tp_out(points: list[Point], specs: Specs, restarts: int = 8
                     ) -> dict[tuple[str, str, int], tuple[list[tuple[str, int]], list[tuple[float, float]]]]:
    """For each (model, GPU) measured at several TPs: refit jointly on every point but that GPU's largest TP,
    and score those points. Returns (model, GPU, held-out TP) -> (the (GPU, TP) groups fitted on, errors).

    The other GPU types' points stay in the fit: they are what teaches the shared fields how time scales
    with TP, which is the point of a joint fit; the held-out GPU's own fields never see its held-out TP.
    """
    from fidelity import point_errors  # fidelity imports this module lazily; keep the cycle one-way at load

    result = {}
    for model, hardware in sorted({(p.model, p.hardware) for p in points}):
        held_out = max(p.tp for p in points if (p.model, p.hardware) == (model, hardware))
        scored = [p for p in points if (p.model, p.hardware, p.tp) == (model, hardware, held_out)]
        train = [p for p in points if p not in scored]
        if not any(p.hardware == hardware for p in train):
            continue  # one TP only: nothing to extrapolate from
        gpu, spec = specs[hardware]
        calibration = fit(specs, train, restarts)[hardware]
        perf = perf_model(spec, dataclasses.replace(gpu, tp_calibration=calibration), held_out, "tp-comm")
        result[(model, hardware, held_out)] = (sorted({(p.hardware, p.tp) for p in train}),
                                               [point_errors(perf, p) for p in scored])
    return result


def main(argv: list[str] | None = None) -> int:
    """Fit and print the calibration blocks; return the exit status."""
    args = points_parser(__doc__, 8, "Nelder-Mead restarts").parse_args(argv)
    loaded = load_points(args)
    if loaded is None:
        return 2
    points, models, gpus = loaded
    specs = {p.hardware: (gpus[p.hardware], models[p.model]) for p in points}
    for gpu, cal in sorted(fit(specs, points, args.restarts).items()):
        print(f"# {gpu}: fitted jointly on {sorted({(p.hardware, p.tp) for p in points})}")
        print("tp_calibration:")
        for name in NAMES:
            note = "  # held" if name in HELD else "  # shared" if name in SHARED else ""
            print(f"  {name}: {float(getattr(cal, name)):.4g}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
