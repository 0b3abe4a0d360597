"""``scripts/probe_after_burst.py``: its schedules (both variant forms) and its check of a setting. Its episodes
are whole scenarios on five validation seeds (minutes), so the run itself is exercised by the experiment logs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_after_burst", ROOT / "scripts" / "probe_after_burst.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_both_variant_forms_give_the_same_schedule(probe: ModuleType) -> None:
    before, after = [0.75, 0.9, 4, 3], [0.75, 0.9, 4, 1]
    assert probe.schedule_of(["kept then 4+1", before, after, 3900]) == [(0.0, before), (3900.0, after)]
    assert probe.schedule_of(["same", [[0, before], [3900, after]]]) == [(0.0, before), (3900.0, after)]


def test_a_setting_outside_the_probes_choices_is_refused_naming_it(probe: ModuleType) -> None:
    assert probe.indices([0.75, 0.9, 5, 3]).tolist() == [2, 2, 3, 3]
    with pytest.raises(SystemExit, match=r"setting \[0\.75, 0\.65, 5, 3\] is not one of this probe's"):
        probe.indices([0.75, 0.65, 5, 3])
    with pytest.raises(SystemExit, match=r"setting \[0\.75, 0\.9, 5\]"):
        probe.indices([0.75, 0.9, 5])
