"""Load predictors of the SLA planner: the next adjustment interval's value from the past ones.

Dynamo's planner predicts three series independently (request count, mean prompt length, mean output
length), each with its own predictor instance. ``observe`` feeds one value per adjustment interval;
``predict`` returns the forecast for the next interval (NaN before any observation).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from disaggpilot.env.errors import require

PREDICTORS: tuple[str, ...] = ("constant", "moving_average", "holt")
"""Names accepted by :func:`make_predictor`."""


class Predictor(Protocol):
    """A one-step-ahead forecaster of a scalar series."""

    def observe(self, value: float) -> None:
        """Add the latest value of the series."""
        ...

    def predict(self) -> float:
        """The forecast of the next value; NaN before any observation."""
        ...


class ConstantPredictor:
    """Next value = last value (Dynamo's ``constant`` predictor)."""

    def __init__(self) -> None:
        self.last = math.nan

    def observe(self, value: float) -> None:
        """Remember ``value``."""
        self.last = float(value)

    def predict(self) -> float:
        """The last value observed."""
        return self.last


class MovingAveragePredictor:
    """Next value = mean of the last ``window`` values.

    Args:
        window: number of past values averaged (adjustment intervals, >= 1).
    """

    def __init__(self, window: int) -> None:
        require(window >= 1, "moving_average_window", window, "use >= 1 interval")
        self.values: deque[float] = deque(maxlen=window)

    def observe(self, value: float) -> None:
        """Add ``value``; the oldest falls out of the window."""
        self.values.append(float(value))

    def predict(self) -> float:
        """Mean of the window."""
        return sum(self.values) / len(self.values) if self.values else math.nan


class HoltPredictor:
    """Holt's linear trend (double exponential smoothing): next = level + trend.

    ``level_t = α·y_t + (1−α)·(level_{t−1} + trend_{t−1})`` and
    ``trend_t = β·(level_t − level_{t−1}) + (1−β)·trend_{t−1}``, started at ``level_0 = y_0``,
    ``trend_0 = 0`` and ``trend_1 = y_1 − y_0``, so a linear series is forecast exactly from its third point.

    Args:
        alpha: level smoothing in (0, 1].
        beta: trend smoothing in (0, 1].
    """

    def __init__(self, alpha: float, beta: float) -> None:
        require(0.0 < alpha <= 1.0, "holt_alpha", alpha, "use a smoothing factor in (0, 1]")
        require(0.0 < beta <= 1.0, "holt_beta", beta, "use a smoothing factor in (0, 1]")
        self.alpha, self.beta = alpha, beta
        self.level, self.trend, self.count = math.nan, 0.0, 0

    def observe(self, value: float) -> None:
        """Update level and trend with ``value``."""
        value, self.count = float(value), self.count + 1
        if self.count == 1:
            self.level = value
        elif self.count == 2:
            self.level, self.trend = value, value - self.level
        else:
            previous = self.level
            self.level = self.alpha * value + (1 - self.alpha) * (previous + self.trend)
            self.trend = self.beta * (self.level - previous) + (1 - self.beta) * self.trend

    def predict(self) -> float:
        """Level plus one step of trend."""
        return self.level + self.trend


@dataclass(frozen=True)
class PredictorSpec:
    """Which predictor to build and its parameters (see :class:`SlaPlannerSettings`)."""

    kind: str = "constant"
    window: int = 3
    alpha: float = 0.5
    beta: float = 0.3


def make_predictor(spec: PredictorSpec) -> Predictor:
    """A fresh predictor of ``spec.kind``."""
    if spec.kind == "moving_average":
        return MovingAveragePredictor(spec.window)
    if spec.kind == "holt":
        return HoltPredictor(spec.alpha, spec.beta)
    require(spec.kind == "constant", "predictor", spec.kind, f"use one of {PREDICTORS}")
    return ConstantPredictor()
