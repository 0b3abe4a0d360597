"""Fixtures and helpers of the local cluster's tests: a policy bundle for the emulated cluster, and the
``/metrics`` signature the emulator and real vLLM are compared by."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from disaggpilot.agent.headroom import HeadroomSettings
from tests.bundles import build_bundle


def signature(text: str) -> dict[str, tuple[str, frozenset[str], tuple[str, ...]]]:
    """Per metric family of a ``/metrics`` text: type, label names, and its histogram bucket edges in order
    (how the emulator and real vLLM are compared with the recorded scrapes)."""
    result = {}
    for family in text_string_to_metric_families(text):
        labels = frozenset(k for s in family.samples for k in s.labels if k not in ("le", "quantile"))
        edges = tuple(dict.fromkeys(s.labels["le"] for s in family.samples if "le" in s.labels))
        result[family.name] = (family.type, labels, edges)
    return result


# ----- a policy bundle for the emulated cluster ------------------------------------------------------------
PLANNER_LEVELS = HeadroomSettings(prefill_utilization_levels=[0.12, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75],
                                  decode_utilization_levels=[0.3, 0.45, 0.6, 0.75, 0.9], demand_window_intervals=4)
"""The levels and 2-minute demand window of the headroom bundle the rig proof ran before (v3), so the crowd's
replicas are released within its 8-minute run (the shipped bundle's 20-minute window would still hold them)."""
PLANNER_PRIOR = [1, 2]
"""Indices of prefill 0.2 and decode 0.6 in :data:`PLANNER_LEVELS`. Prefill 0.2 plans for 5x the rig crowd's
headroom: at the ``headroom_planner``'s 0.4 the crowd asks for only 5 prefill replicas (1 at base load), too
few to tell scaling from noise; at 0.2 it asks for 9-10 (2 at base), as v3 did (2 -> 10 -> 4)."""


@pytest.fixture(scope="session")
def planner_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``headroom``-mode bundle whose greedy action is :data:`PLANNER_PRIOR`: the fixed-headroom
    planner packaged as a policy, so it sizes the pools from measured demand without training (~2 s)."""
    return build_bundle(tmp_path_factory.mktemp("planner_bundle"), levels=PLANNER_LEVELS, prior_action=PLANNER_PRIOR)
