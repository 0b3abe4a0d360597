"""Fit the burst model of the Azure 2023 traces' arrivals, and show the fit against the trace.

A Markov-modulated Poisson process (``ArrivalSpec(process="mmpp")``) is fitted to each trace as a Poisson
hidden Markov model over request counts per window (Baum-Welch, deterministic start): each hidden state
is a rate, and a state's mean dwell is ``window / (1 - p_stay)``. The script prints the fitted
``mmpp_multipliers`` (requests per second in each state) and ``mmpp_dwell_s`` (seconds), ready for a
scenario YAML, and a table that compares the trace with samples of the fitted MMPP and of the gamma renewal
with the trace's inter-arrival CV: count CV per 1/10/30/60/300 s window, and inter-arrival quantiles.
These are the figures in ``configs/workload/README.md``.

Usage::

    .venv/bin/python benchmarks/fit_arrivals.py [--hours 10] [--seeds 2]

The sampled MMPP moves uniformly to another state when it leaves one, while the hidden Markov model
estimates a full transition matrix; with two or three states the difference is small (the table shows it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from disaggpilot.env.trace import load_trace
from disaggpilot.env.workload import ArrivalSpec, sample_arrivals

TRACES: dict[str, tuple[str, int, float]] = {
    "code": ("data/traces/azure2023_code.csv", 3, 5.0),
    "conv": ("data/traces/azure2023_conv.csv", 2, 10.0),
}
"""Trace name -> (path, hidden states, count window in seconds). Three states for code (idle, steady,
burst) at 5 s reproduce its count CV from 10 s to 300 s; conv's slow drift needs two states at 10 s."""
WINDOWS_S: tuple[float, ...] = (1.0, 10.0, 30.0, 60.0, 300.0)
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
EM_ITERATIONS = 300


@dataclass(frozen=True)
class HiddenMarkovFit:
    """A Poisson hidden Markov model over counts per window, states sorted by rate."""

    rates_rps: np.ndarray
    """Mean arrival rate of each state (requests per second)."""
    transitions: np.ndarray
    """Per-window transition probabilities (rows sum to 1)."""
    window_s: float
    """Count window (seconds)."""

    @property
    def dwell_s(self) -> np.ndarray:
        """Mean sojourn in each state (seconds): a geometric number of windows."""
        return self.window_s / (1.0 - np.diag(self.transitions))


def window_counts(times: np.ndarray, window_s: float) -> np.ndarray:
    """Requests per ``window_s`` window from the first to the last arrival."""
    return np.histogram(times, bins=np.arange(0.0, times[-1] + window_s, window_s))[0]


def _poisson_likelihoods(counts: np.ndarray, means: np.ndarray) -> np.ndarray:
    """P(count | state) for every window and state, scaled per window (the scale cancels in Baum-Welch)."""
    log_pmf = counts[:, None] * np.log(means[None, :]) - means[None, :]
    return np.exp(log_pmf - log_pmf.max(axis=1, keepdims=True)) + 1e-300


def _forward_backward(likelihood: np.ndarray, transitions: np.ndarray, start: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled forward and backward variables and the per-window normalisers."""
    windows, states = likelihood.shape
    forward, backward, norm = np.zeros((windows, states)), np.ones((windows, states)), np.zeros(windows)
    forward[0] = start * likelihood[0]
    norm[0] = forward[0].sum()
    forward[0] /= norm[0]
    for t in range(1, windows):
        forward[t] = (forward[t - 1] @ transitions) * likelihood[t]
        norm[t] = forward[t].sum()
        forward[t] /= norm[t]
    for t in range(windows - 2, -1, -1):
        backward[t] = transitions @ (likelihood[t + 1] * backward[t + 1]) / norm[t + 1]
    return forward, backward, norm


def fit_hidden_markov(counts: np.ndarray, states: int, window_s: float) -> HiddenMarkovFit:
    """Baum-Welch from a deterministic start (rates at spread quantiles, sticky transitions)."""
    means = np.quantile(counts, np.linspace(0.2, 0.95, states)) + 0.1
    transitions = np.full((states, states), 0.05 / (states - 1))
    np.fill_diagonal(transitions, 0.95)
    start = np.full(states, 1.0 / states)
    for _ in range(EM_ITERATIONS):
        likelihood = _poisson_likelihoods(counts, means)
        forward, backward, norm = _forward_backward(likelihood, transitions, start)
        posterior = forward * backward
        posterior /= posterior.sum(axis=1, keepdims=True)
        pairs = forward[:-1, :, None] * transitions[None] * (likelihood[1:] * backward[1:])[:, None, :]
        pairs /= norm[1:, None, None]
        transitions = pairs.sum(axis=0) / pairs.sum(axis=(0, 2))[:, None]
        start, means = posterior[0], (posterior * counts[:, None]).sum(axis=0) / posterior.sum(axis=0)
    order = np.argsort(means)
    return HiddenMarkovFit(means[order] / window_s, transitions[np.ix_(order, order)], window_s)


def arrival_figures(times: np.ndarray) -> list[float]:
    """Count CV per window of :data:`WINDOWS_S`, inter-arrival quantiles (seconds), share of gaps < 1 ms."""
    gaps = np.diff(times)
    cvs = [float(c.std() / c.mean()) for c in (window_counts(times, w) for w in WINDOWS_S)]
    return [*cvs, *(float(q) for q in np.quantile(gaps, QUANTILES)), float(np.mean(gaps < 1e-3))]


def sampled_figures(spec: ArrivalSpec, hours: float, seeds: int) -> list[float]:
    """:func:`arrival_figures` of samples of ``spec``, averaged over ``seeds`` seeds."""
    runs = [arrival_figures(sample_arrivals(spec, hours * 3600.0, np.random.default_rng(seed)))
            for seed in range(seeds)]
    return [float(v) for v in np.mean(runs, axis=0)]


def print_fit(name: str, hours: float, seeds: int) -> None:
    """Fit one trace and print its MMPP settings and the comparison table."""
    path, states, window_s = TRACES[name]
    times = load_trace(path, "azure").timestamp_s
    gaps = np.diff(times)
    fit = fit_hidden_markov(window_counts(times, window_s), states, window_s)
    rate = float(1.0 / gaps.mean())
    mmpp = ArrivalSpec(process="mmpp", rate_rps=rate, mmpp_multipliers=[round(float(r), 4) for r in fit.rates_rps],
                       mmpp_dwell_s=[round(float(d), 2) for d in fit.dwell_s])
    gamma = ArrivalSpec(process="gamma", rate_rps=rate, cv=float(gaps.std() / gaps.mean()))
    print(f"\n## {name}: {len(times):,} requests, {rate:.3f} req/s; {states}-state fit on {window_s:g} s counts")
    print(f"arrival: {{process: mmpp, rate_rps: {rate:.3f}, mmpp_multipliers: {mmpp.mmpp_multipliers}, "
          f"mmpp_dwell_s: {mmpp.mmpp_dwell_s}}}")
    header = [f"count CV {w:g} s" for w in WINDOWS_S] + [f"gap p{round(q * 100)} (s)" for q in QUANTILES]
    header.append("gaps < 1 ms")
    print("| source | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    rows = {"trace": arrival_figures(times), "mmpp (fitted)": sampled_figures(mmpp, hours, seeds),
            f"gamma cv {gamma.cv:.3g}": sampled_figures(gamma, hours, seeds)}
    for label, values in rows.items():
        print(f"| {label} | " + " | ".join(f"{v:.3g}" for v in values) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=10.0, help="simulated hours per model sample")
    parser.add_argument("--seeds", type=int, default=2, help="model samples averaged per row")
    args = parser.parse_args()
    for name in TRACES:
        print_fit(name, args.hours, args.seeds)


if __name__ == "__main__":
    main()
