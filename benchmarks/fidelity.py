"""Fidelity of the performance model against measured iteration times (docs/architecture.md).

For every configuration in a CSV in the format of Splitwise's ``perf_model.csv`` (columns model, hardware,
prompt_size, batch_size, token_size, prompt_time, token_time, tensor_parallel; times in ms), print the
predicted and measured prefill time and decode step time and the absolute percentage error. Repeated
measurements of one configuration are aggregated by their median, so each configuration counts once.

Then the median and p90 absolute error per (model, GPU, TP, phase) group (lines ``group MODEL GPU tpN
PHASE: ...``), and a leave-one-TP-out check: for each (model, GPU) measured at two or more TPs, the
calibration is refitted by ``benchmarks/fit_perf.py``'s :func:`fit` without the largest TP's points and
scored on them (lines ``holdout MODEL GPU tpN PHASE: ...``), so extrapolation to an unseen TP is measured
rather than assumed. The same figures follow for ``perf_model=tp-comm`` (``env.perf_tp``, labels
``group[tp-comm]``, ``holdout[tp-comm]``, ``leave_one_tp_out[tp-comm]``), whose held-out refit is
``benchmarks/fit_tp_perf.py``'s joint fit over every other (GPU, TP) group. The shipped calibration is not
changed. The last line is
``median_abs_pct_error prefill=X% decode=Y%`` over all configurations, in sample.

Usage::

    python benchmarks/fidelity.py [--points FILE] [--configs DIR] [--restarts N]

``benchmarks/fit_perf.py`` imports :func:`read_points` and :func:`predict_ms` from here, so the fit and
this check read the measurements the same way.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from disaggpilot.env.catalog import GpuSpec, ModelSpec, load_gpu, load_model
from disaggpilot.env.data import data_dir, missing_data_message
from disaggpilot.env.errors import DisaggpilotError
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.perf_tp import make_perf_model

DEFAULT_POINTS = data_dir() / "calibration" / "splitwise_perf_model.csv"
"""Splitwise's measured Llama-2-70B iteration times, the repository's copy (see ``data/README.md``)."""
HARDWARE_NAMES = {"a100-80gb": "a100-80gb", "h100-80gb": "h100-sxm"}
"""Splitwise's hardware names -> ``configs/hardware`` names (Splitwise ran DGX A100 and DGX H100 nodes)."""
MODEL_NAMES = {"llama2-70b": "llama-2-70b"}
"""Splitwise's model names -> ``configs/model`` names."""
COLUMNS: dict[str, type] = {"model": str, "hardware": str, "prompt_size": int, "batch_size": int,
                            "token_size": int, "prompt_time": float, "token_time": float,
                            "tensor_parallel": int}
"""The columns read, with their types; other columns (power, e2e_time) are ignored."""


class PointsError(ValueError):
    """The points CSV is malformed; the message names the file, line and column."""


@dataclass(frozen=True)
class Point:
    """One measured configuration (repeated rows merged)."""

    model: str
    """Catalog model name."""
    hardware: str
    """Catalog GPU name."""
    tp: int
    """Tensor-parallel degree (GPUs)."""
    prompt_size: int
    """Tokens per prompt."""
    batch_size: int
    """Prompts prefilled together, and sequences per decode step."""
    token_size: int
    """Output tokens per sequence."""
    prefill_ms: float
    """Median measured time to prefill the batch (ms)."""
    decode_ms: float
    """Median measured time of one decode step (ms)."""
    samples: int
    """Rows merged into this point."""
    line: int
    """First CSV line of this configuration, for messages."""


def _parse(path: Path, line: int, column: str, text: str | None, kind: type) -> str | int | float:
    where = f"{path}:{line}: column {column!r}"
    if text is None or text.strip() == "":
        raise PointsError(f"{where} is empty: every row needs a value there")
    if kind is str:
        return text.strip()
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        raise PointsError(f"{where}={text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if not math.isfinite(value) or value <= 0:
        raise PointsError(f"{where}={text!r} must be a positive finite number")
    return value


def read_points(path: Path) -> list[Point]:
    """Read and merge the measurements of ``path``; raise :class:`PointsError` naming file/line/column."""
    if path.resolve() == DEFAULT_POINTS and not path.is_file():
        raise PointsError(missing_data_message(DEFAULT_POINTS))
    try:
        text = path.read_text()
    except OSError as error:
        raise PointsError(f"{path}: cannot read ({error})") from error
    reader = csv.DictReader(text.splitlines())
    missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise PointsError(f"{path}:1: header lacks column(s) {missing}: expected Splitwise's perf_model.csv "
                          f"columns {list(COLUMNS)}")
    groups: dict[tuple[str, str, int, int, int, int], list[tuple[float, float, int]]] = defaultdict(list)
    for row in reader:
        line = reader.line_num
        if None in row:
            raise PointsError(f"{path}:{line}: column {len(reader.fieldnames or []) + 1}: more fields than "
                              "the header has columns")
        value = {c: _parse(path, line, c, row[c], kind) for c, kind in COLUMNS.items()}
        model = MODEL_NAMES.get(str(value["model"]), str(value["model"]))
        hardware = HARDWARE_NAMES.get(str(value["hardware"]), str(value["hardware"]))
        key = (model, hardware, int(value["tensor_parallel"]), int(value["prompt_size"]),
               int(value["batch_size"]), int(value["token_size"]))
        groups[key].append((float(value["prompt_time"]), float(value["token_time"]), line))
    if not groups:
        raise PointsError(f"{path}:2: no data rows after the header")
    return [Point(*key, statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
                  len(rows), rows[0][2]) for key, rows in groups.items()]


def perf_model(model: ModelSpec, gpu: GpuSpec, tp: int, kind: str = "roofline") -> PerfModel:
    """The replica a measurement ran on, under performance model ``kind`` (``env.perf_tp.PERF_MODELS``).

    Memory settings only set KV capacity, which no time depends on; they are loose because Llama-2-70B on
    2 x 80 GB leaves little room beside its 138 GB of weights."""
    return make_perf_model(kind, model, gpu, tp, gpu_memory_utilization=0.95, activation_reserve_gb=1.0)


def predict_ms(perf: PerfModel, point: Point) -> tuple[float, float]:
    """Predicted (prefill time, decode step time) of ``point`` in ms.

    Prefill is one iteration over ``batch_size`` whole prompts; a decode step holds ``batch_size``
    sequences of ``prompt_size + token_size / 2`` tokens each, the mean over the measured run.
    """
    tokens = point.batch_size * point.prompt_size
    pairs = point.batch_size * point.prompt_size * point.prompt_size / 2.0
    context = point.batch_size * (point.prompt_size + point.token_size / 2.0)
    return 1e3 * perf.prefill_time(tokens, pairs), 1e3 * perf.decode_step_time(point.batch_size, context)


def load_specs(points: list[Point], path: Path, configs: Path | None
               ) -> tuple[dict[str, ModelSpec], dict[str, GpuSpec]]:
    """Load every model and GPU the points name; a name the catalog lacks is reported at its CSV line."""
    models: dict[str, ModelSpec] = {}
    gpus: dict[str, GpuSpec] = {}
    column = "model"
    try:
        for point in points:
            column = "model"
            if point.model not in models:
                models[point.model] = load_model(point.model, configs)
            column = "hardware"
            if point.hardware not in gpus:
                gpus[point.hardware] = load_gpu(point.hardware, configs)
    except DisaggpilotError as error:
        raise PointsError(f"{path}:{point.line}: column {column!r}: {error}") from error
    return models, gpus


def pct_error(predicted: float, measured: float) -> float:
    """Absolute percentage error (%)."""
    return 100.0 * abs(predicted - measured) / measured


Group = tuple[str, str, int]
"""(model, GPU, TP): the points one replica configuration was measured on."""
PHASES = ("prefill", "decode")
"""The two errors of a point, in the order of :func:`point_errors`."""


def point_errors(perf: PerfModel, point: Point) -> tuple[float, float]:
    """Absolute percentage errors (prefill, decode) of ``perf``'s predictions of ``point``."""
    prefill, decode = predict_ms(perf, point)
    return pct_error(prefill, point.prefill_ms), pct_error(decode, point.decode_ms)


def leave_one_tp_out(points: list[Point], models: dict[str, ModelSpec], gpus: dict[str, GpuSpec],
                     restarts: int) -> dict[Group, tuple[list[int], list[tuple[float, float]]]]:
    """For each (model, GPU) measured at several TPs: refit without the largest TP and score its points.

    Returns (model, GPU, held-out TP) -> (the TPs fitted on, the held-out points' errors). The refit is
    ``benchmarks/fit_perf.py``'s, with its held fields, so it is the fit that produced the shipped values.
    """
    from fit_perf import HELD, fit  # here, not at the top: fit_perf imports this module

    result: dict[Group, tuple[list[int], list[tuple[float, float]]]] = {}
    for model, hardware in sorted({(p.model, p.hardware) for p in points}):
        mine = [p for p in points if (p.model, p.hardware) == (model, hardware)]
        held_out = max(p.tp for p in mine)
        train = [p for p in mine if p.tp < held_out]
        if not train:
            continue  # one TP only: nothing to extrapolate from
        calibration = fit(gpus[hardware], models[model], train, HELD, restarts)
        perf = perf_model(models[model], dataclasses.replace(gpus[hardware], calibration=calibration), held_out)
        result[(model, hardware, held_out)] = (sorted({p.tp for p in train}),
                                               [point_errors(perf, p) for p in mine if p.tp == held_out])
    return result


def print_groups(label: str, groups: dict[Group, list[tuple[float, float]]]) -> None:
    """One line per group and phase: ``LABEL MODEL GPU tpN PHASE: n points, median ..%, p90 ..%``."""
    for (model, hardware, tp), pairs in sorted(groups.items()):
        for index, phase in enumerate(PHASES):
            values = [pair[index] for pair in pairs]
            print(f"{label} {model} {hardware} tp{tp} {phase}: {len(values)} points, "
                  f"median_abs_pct_error={statistics.median(values):.1f}% p90={_p90(values):.1f}%")


def summary(pairs: list[tuple[float, float]]) -> str:
    """``median_abs_pct_error prefill=X% decode=Y%, p90 prefill=X% decode=Y%`` of ``pairs``."""
    return (f"median_abs_pct_error prefill={statistics.median(e[0] for e in pairs):.1f}% "
            f"decode={statistics.median(e[1] for e in pairs):.1f}%, "
            f"p90 prefill={_p90([e[0] for e in pairs]):.1f}% decode={_p90([e[1] for e in pairs]):.1f}%")


def points_parser(doc: str | None, restarts: int, restarts_help: str) -> argparse.ArgumentParser:
    """The command line the fidelity and fit scripts share: ``--points``, ``--configs``, ``--restarts``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--points", type=Path, default=DEFAULT_POINTS, help="measurements CSV")
    parser.add_argument("--configs", type=Path, default=None, help="config tree (default: the repo's)")
    parser.add_argument("--restarts", type=int, default=restarts, help=restarts_help)
    return parser


def load_points(args: argparse.Namespace
                ) -> tuple[list[Point], dict[str, ModelSpec], dict[str, GpuSpec]] | None:
    """The points of ``args.points`` and the specs they name; None after printing the error to stderr."""
    try:
        points = read_points(args.points)
        return (points, *load_specs(points, args.points, args.configs))
    except (PointsError, DisaggpilotError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """Print the per-point table, the per-group and leave-one-TP-out figures and the summary."""
    args = points_parser(__doc__, 16, "Nelder-Mead restarts of each refit").parse_args(argv)
    try:
        points = read_points(args.points)
        models, gpus = load_specs(points, args.points, args.configs)
        perfs = {(p.model, p.hardware, p.tp): perf_model(models[p.model], gpus[p.hardware], p.tp)
                 for p in points}
    except (PointsError, DisaggpilotError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print(f"# {args.points}: {len(points)} configurations")
    groups = print_points(points, perfs)
    print("# per (model, GPU, TP, phase), shipped calibration, in sample")
    print_groups("group", groups)
    for hardware in sorted({p.hardware for p in points}):
        mine = [pair for (_, gpu, _), pairs in groups.items() if gpu == hardware for pair in pairs]
        print(f"{hardware}: {len(mine)} points, {summary(mine)}")
    held_out = leave_one_tp_out(points, models, gpus, args.restarts)
    for (model, hardware, tp), (fitted, _) in sorted(held_out.items()):
        print(f"# leave-one-TP-out {model} {hardware}: refitted on tp {fitted}, scored on tp {tp}")
    print_groups("holdout", {group: pairs for group, (_, pairs) in held_out.items()})
    if held_out:
        print(f"leave_one_tp_out {summary([pair for _, pairs in held_out.values() for pair in pairs])}")
    print_tp_comm(points, models, gpus)
    every = [pair for pairs in groups.values() for pair in pairs]
    print(f"median_abs_pct_error prefill={statistics.median(e[0] for e in every):.1f}% "
          f"decode={statistics.median(e[1] for e in every):.1f}%")
    return 0


def print_tp_comm(points: list[Point], models: dict[str, ModelSpec], gpus: dict[str, GpuSpec]) -> None:
    """The same figures for ``perf_model=tp-comm`` (``env.perf_tp``), labelled ``group[tp-comm]``,
    ``holdout[tp-comm]`` and ``leave_one_tp_out[tp-comm]``; its refit is ``fit_tp_perf.py``'s joint one."""
    from fit_tp_perf import leave_one_tp_out as joint_leave_one_tp_out  # fit_tp_perf imports this module

    perfs = {(p.model, p.hardware, p.tp): perf_model(models[p.model], gpus[p.hardware], p.tp, "tp-comm")
             for p in points}
    groups: dict[Group, list[tuple[float, float]]] = defaultdict(list)
    for p in points:
        groups[(p.model, p.hardware, p.tp)].append(point_errors(perfs[(p.model, p.hardware, p.tp)], p))
    print("# perf_model=tp-comm: per (model, GPU, TP, phase), shipped tp_calibration, in sample")
    print_groups("group[tp-comm]", groups)
    specs = {p.hardware: (gpus[p.hardware], models[p.model]) for p in points}
    held_out = joint_leave_one_tp_out(points, specs)
    for (model, hardware, tp), (fitted, _) in sorted(held_out.items()):
        print(f"# leave-one-TP-out[tp-comm] {model} {hardware}: refitted jointly on {fitted}, scored on tp {tp}")
    print_groups("holdout[tp-comm]", {group: pairs for group, (_, pairs) in held_out.items()})
    if held_out:
        print(f"leave_one_tp_out[tp-comm] {summary([pair for _, pairs in held_out.values() for pair in pairs])}")


def print_points(points: list[Point], perfs: dict[Group, PerfModel]) -> dict[Group, list[tuple[float, float]]]:
    """Print predicted against measured times per point; return the errors per group."""
    print(f"{'hardware':<10} {'tp':>2} {'prompt':>6} {'batch':>5} {'out':>5} {'n':>2} | "
          f"{'prefill pred':>12} {'meas':>9} {'err%':>6} | {'decode pred':>11} {'meas':>7} {'err%':>6}")
    groups: dict[Group, list[tuple[float, float]]] = defaultdict(list)
    for p in sorted(points, key=lambda q: (q.model, q.hardware, q.tp, q.prompt_size, q.batch_size, q.token_size)):
        perf = perfs[(p.model, p.hardware, p.tp)]
        prefill, decode = predict_ms(perf, p)
        pair = point_errors(perf, p)
        groups[(p.model, p.hardware, p.tp)].append(pair)
        print(f"{p.hardware:<10} {p.tp:>2} {p.prompt_size:>6} {p.batch_size:>5} {p.token_size:>5} "
              f"{p.samples:>2} | {prefill:>12.1f} {p.prefill_ms:>9.1f} {pair[0]:>6.1f} | "
              f"{decode:>11.2f} {p.decode_ms:>7.2f} {pair[1]:>6.1f}")
    return groups


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


if __name__ == "__main__":
    sys.exit(main())
