"""``env.metrics.Histogram.rescaled``: the same observations in another time unit, on the contract's edges."""

from __future__ import annotations

import numpy as np
import pytest

from env.metrics import TTFT_BUCKETS, Histogram


def lognormal_histogram(count: int = 20_000, seed: int = 0) -> tuple[Histogram, np.ndarray]:
    values = np.random.default_rng(seed).lognormal(mean=-1.0, sigma=0.8, size=count)
    histogram = Histogram.empty(TTFT_BUCKETS)
    for value in values:
        histogram.observe(float(value))
    return histogram, values


def test_rescaling_by_one_changes_nothing() -> None:
    histogram, _ = lognormal_histogram()
    same = histogram.rescaled(1.0)
    assert np.array_equal(same.counts, histogram.counts) and same.total == histogram.total


def test_rescaling_keeps_the_count_scales_the_sum_and_tracks_the_scaled_observations() -> None:
    histogram, values = lognormal_histogram()
    stretched = histogram.rescaled(4.0)
    direct = Histogram.empty(TTFT_BUCKETS)
    for value in values * 4.0:
        direct.observe(float(value))
    assert stretched.count == pytest.approx(histogram.count) and (stretched.counts >= 0).all()
    assert stretched.total == pytest.approx(histogram.total * 4.0)
    for q in (0.5, 0.9, 0.99):
        # Within the bucket interpolation both sides make: 10% on these edges.
        assert stretched.quantile(q) == pytest.approx(direct.quantile(q), rel=0.10)


def test_edges_that_scale_onto_edges_move_their_counts_exactly() -> None:
    histogram = Histogram.empty(TTFT_BUCKETS)
    histogram.observe(0.01, weight=5)   # le=0.01 -> x2 lands on le=0.02
    histogram.observe(0.02, weight=3)   # le=0.02 -> x2 lands on le=0.04
    stretched = histogram.rescaled(2.0)
    assert stretched.counts[TTFT_BUCKETS.index(0.02)] == pytest.approx(5)
    assert stretched.counts[TTFT_BUCKETS.index(0.04)] == pytest.approx(3)


def test_mass_beyond_the_last_finite_edge_stays_in_inf() -> None:
    histogram = Histogram.empty(TTFT_BUCKETS)
    histogram.observe(5000.0, weight=7)
    assert histogram.rescaled(0.25).counts[-1] == 7  # +Inf says nothing of where its mass lies


def test_unknown_counts_stay_unknown_and_bad_factors_are_refused() -> None:
    unknown = Histogram.empty(TTFT_BUCKETS)
    unknown.counts[:], unknown.total = np.nan, np.nan
    assert np.isnan(unknown.rescaled(4.0).counts).all()
    for factor in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="factor"):
            unknown.rescaled(factor)
