"""Simulator cost in CPU instructions: the figure of ``sim_speed.py`` without the machine's noise.

On this shared two-core machine ``sim_speed.py``'s normalised figure moved between 13.8 and 25.1 in four
back-to-back runs on 2026-12-07, two of this code and two of an older one, so a slowdown of 10 % cannot be
seen in it. Instruction counts can: valgrind's cachegrind (``--cache-sim=no``) counts them to about 1 %
whatever else runs. This benchmark counts, each in its own process under valgrind,

* the reference scenario of ``sim_speed.py`` simulated after a warm-up ``reset`` (which loads the traces), minus
  a run that stops after the warm-up: instructions per simulated request;
* ``sim_speed.py``'s yardstick (heap push and pop pairs), minus a run of none: instructions per operation;

and prints both and their ratio in ``sim_speed.py``'s unit, simulated requests per 1000 yardstick operations,
counted in instructions instead of seconds. Its value is not ``sim_speed.py``'s (the two workloads run at different
instructions per cycle): compare it only with itself, across commits.
``--python`` runs the same counts with another checkout's interpreter (e.g. a worktree of an older commit
with its own virtual environment) and prints the ratio of the two, measured in the same run.

Usage: ``python benchmarks/sim_instructions.py [--duration-s 3600] [--python OTHER/.venv/bin/python]``.
Needs valgrind (Debian: ``apt-get install valgrind``); takes about 3 minutes per interpreter.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

YARDSTICK_OPERATIONS = 200_000
"""Heap push and pop pairs the yardstick counts (enough that the interpreter's start-up cancels out)."""
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


@dataclass(frozen=True)
class Counts:
    """Instruction counts of one interpreter."""

    per_request: float
    """Instructions per simulated request (reset included once)."""
    per_operation: float
    """Instructions per yardstick heap push and pop pair."""
    requests: int
    """Requests the reference scenario simulated."""

    @property
    def requests_per_1000_operations(self) -> float:
        """``sim_speed.py``'s unit: simulated requests per 1000 yardstick operations."""
        return 1000 * self.per_operation / self.per_request


def instruction_refs(valgrind_output: str) -> int:
    """The ``I refs`` total of a cachegrind run's summary; raises ValueError naming what was missing."""
    found = REFS.findall(valgrind_output)
    if not found:
        raise ValueError("no 'I refs:' line in valgrind's output: was it run with --tool=cachegrind? "
                         f"Its last lines: {valgrind_output[-500:]!r}")
    return int(found[-1].replace(",", ""))


def child(mode: str, duration_s: float) -> None:
    """One measured workload (run under valgrind by :func:`count`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sim_speed import heap_reference, reference_scenario  # the same workloads as sim_speed.py

    if mode.startswith("yardstick"):
        heap_reference(YARDSTICK_OPERATIONS if mode == "yardstick" else 0)
        return
    from disaggpilot.env.sim.cluster import SimBackend

    scenario = reference_scenario(duration_s)
    backend = SimBackend(scenario)
    backend.reset(0)  # loads and caches the traces: counted in both runs, so it cancels out
    if mode == "simulate":
        backend.reset(0)
        for _ in range(round(duration_s / 30.0)):
            backend.advance(30.0)
    print(f"requests {backend.totals['arrived']}")


def count(python: str, mode: str, duration_s: float) -> tuple[int, str]:
    """Instructions of ``mode`` under ``python`` and what it printed."""
    with tempfile.TemporaryDirectory() as folder:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={folder}/out",
                   python, str(Path(__file__).resolve()), "--child", mode, "--duration-s", str(duration_s)]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
                                check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: {python} {mode} under valgrind exited {result.returncode}: {result.stderr[-1500:]}")
    return instruction_refs(result.stderr), result.stdout


def measure(python: str, duration_s: float) -> Counts:
    """The four runs of one interpreter, two at a time."""
    modes = ["warmup", "simulate", "yardstick-empty", "yardstick"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        warmup, simulate, empty, yardstick = pool.map(lambda mode: count(python, mode, duration_s), modes)
    requests = int(simulate[1].split()[-1])
    return Counts(per_request=(simulate[0] - warmup[0]) / requests,
                  per_operation=(yardstick[0] - empty[0]) / YARDSTICK_OPERATIONS, requests=requests)


def report(label: str, counts: Counts) -> None:
    """Print one interpreter's figures."""
    print(f"{label}: {counts.requests} requests; {counts.per_request:,.0f} instructions per simulated request, "
          f"{counts.per_operation:,.0f} per yardstick operation; "
          f"simulated requests per 1000 yardstick operations: {counts.requests_per_1000_operations:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=3600.0, help="simulated seconds")
    parser.add_argument("--python", help="another checkout's interpreter to count in the same run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.duration_s)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("error: valgrind is not installed; on Debian: sudo apt-get install valgrind")
    this = measure(sys.executable, args.duration_s)
    report("this checkout", this)
    if args.python:
        other = measure(args.python, args.duration_s)
        report(f"{args.python}", other)
        print(f"instructions per simulated request, this checkout / the other: "
              f"{this.per_request / other.per_request:.3f}")


if __name__ == "__main__":
    main()
