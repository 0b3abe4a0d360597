"""Observations stay bit-identical to the recorded ones (``tests/env/observation_cases.py`` says how they were made):
the shipped bundle's, the defaults', a new run's with every opt-in feature, and the tiny test bundles'."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.env.observation_cases import FIXTURE, build_tiny_bundles, env_cases

RECORDED = np.load(FIXTURE)
Cases = dict[str, Callable[[], np.ndarray]]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    return env_cases(build_tiny_bundles(Path(tmp_path_factory.mktemp("tiny_bundles"))))


def test_every_recorded_case_is_still_computed(cases: Cases) -> None:
    assert sorted(cases) == sorted(name for name in RECORDED.files if not name.startswith("controller/"))


@pytest.mark.parametrize("name", [name for name in RECORDED.files if not name.startswith("controller/")])
def test_observations_are_bit_identical_to_the_recorded_ones(name: str, cases: Cases) -> None:
    observed = cases[name]()
    assert observed.dtype == RECORDED[name].dtype == np.float32
    assert np.array_equal(observed, RECORDED[name]), f"{name}: {np.argwhere(observed != RECORDED[name])[:5]}"
