"""The shipped bundle in the controller loop sees and decides exactly as recorded
(``tests/env/observation_cases.py``)."""

from __future__ import annotations

import numpy as np

from tests.env.observation_cases import FIXTURE, controller_run


def test_the_shipped_bundle_observes_and_decides_as_recorded() -> None:
    recorded = np.load(FIXTURE)
    observations, targets = controller_run()
    assert np.array_equal(observations, recorded["controller/observations"])
    assert np.array_equal(targets, recorded["controller/targets"])
