"""The SLA planner's load predictors."""

from __future__ import annotations

import math

import pytest

from disaggpilot.agent.baselines.predictors import (
    ConstantPredictor,
    HoltPredictor,
    MovingAveragePredictor,
    PredictorSpec,
    make_predictor,
)
from disaggpilot.env.errors import ConfigError


def test_constant_repeats_the_last_value() -> None:
    predictor = ConstantPredictor()
    assert math.isnan(predictor.predict())
    for value in (3.0, 7.0, 5.0):
        predictor.observe(value)
    assert predictor.predict() == 5.0


def test_moving_average_over_its_window() -> None:
    predictor = MovingAveragePredictor(window=3)
    for value in (100.0, 1.0, 2.0, 6.0):
        predictor.observe(value)
    assert predictor.predict() == pytest.approx(3.0)


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.3), (0.2, 0.9), (1.0, 1.0)])
def test_holt_predicts_the_next_point_of_a_linear_series(alpha: float, beta: float) -> None:
    predictor = HoltPredictor(alpha, beta)
    for t in range(6):
        predictor.observe(10.0 + 4.0 * t)
        if t >= 1:
            assert predictor.predict() == pytest.approx(10.0 + 4.0 * (t + 1))


def test_holt_follows_a_change_of_trend() -> None:
    predictor = HoltPredictor(alpha=0.8, beta=0.8)
    for value in (10.0, 10.0, 10.0, 20.0, 30.0, 40.0):
        predictor.observe(value)
    assert 40.0 < predictor.predict() < 55.0


def test_make_predictor_builds_and_validates() -> None:
    assert isinstance(make_predictor(PredictorSpec("holt")), HoltPredictor)
    assert isinstance(make_predictor(PredictorSpec("moving_average", window=2)), MovingAveragePredictor)
    with pytest.raises(ConfigError, match="moving_average_window=0"):
        make_predictor(PredictorSpec("moving_average", window=0))
