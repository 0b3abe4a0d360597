"""The bounded snapshot history: absolute positions, recent contents."""

from __future__ import annotations

import pytest

from disaggpilot.controller.history import History
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.testing import make_snapshot
from tests.controller.conftest import config, healthy_spec, make_rig


def snapshots(count: int) -> list[MetricsSnapshot]:
    return [make_snapshot(healthy_spec(), 30.0 * i, 30.0 * (i + 1)) for i in range(count)]


def test_len_counts_every_snapshot_and_only_the_last_are_kept() -> None:
    history, items = History(keep=3), snapshots(5)
    for item in items:
        history.append(item)
    assert len(history) == 5 and history[-1] is items[4] and history[2] is items[2]
    assert list(history[2:]) == items[2:] and list(history[max(1, len(history) - 2):]) == items[3:]
    with pytest.raises(IndexError, match="only the last 3 are"):
        history[1]


def test_the_fallback_planner_adjusts_on_its_boundaries_with_a_short_history() -> None:
    settings = config(history_intervals=4, fallback={"planner": "sla_planner",
                                                     "planner_settings": {"adjustment_interval_s": 90.0}})
    rig = make_rig(None, settings)
    decisions = rig.run(12)
    assert all(d.source == "fallback" and d.fallback_action is not None for d in decisions)
    assert len(rig.loop.history) == 13 and len(rig.loop.history._items) == 4


def test_a_history_shorter_than_the_fallbacks_adjustment_is_refused() -> None:
    with pytest.raises(ValueError, match=r"controller\.history_intervals=2"):
        config(history_intervals=2, fallback={"planner": "sla_planner",
                                              "planner_settings": {"adjustment_interval_s": 120.0}})


def test_a_history_shorter_than_the_headroom_fallbacks_window_is_refused() -> None:
    with pytest.raises(ValueError, match=r"controller\.history_intervals=8.*demand window \(40 intervals\)"):
        config(history_intervals=8)
    config(history_intervals=8, fallback={"planner_settings": {"demand_window_intervals": 8}})
