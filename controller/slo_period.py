"""What a daemon joining an SLO period under way needs to know of it: its tenants' traffic so far.

Without it a restarted daemon would think every tenant's miss budget full and see no burst behind it (the
arrival trend and the period's peak start afresh), so a policy that paces its budget, or holds a floor after a
burst, would act as if the period had just begun. The intervals come from the source's metrics store
(``env.backend.PeriodHistory``: the gateway's counters in Prometheus); a source without one, a store that does
not answer and counts that are not valid all leave the tenants concerned to start afresh, and say so in the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from disaggpilot.controller.validate import SCRAPE
from disaggpilot.env.backend import PeriodHistory
from disaggpilot.env.metrics import HISTORY_COUNTERS, JUDGED_COUNTERS, MetricsSnapshot

log = logging.getLogger("disaggpilot.controller")
History = list[MetricsSnapshot]


def period_so_far(source: object, tenants: Sequence[str], elapsed_s: float, interval_s: float,
                  retrying: Callable[[Callable[[], History]], History]) -> tuple[History, list[str]]:
    """The period's first ``elapsed_s`` seconds as intervals holding ``tenants``' valid counts, and the tenants
    no interval holds (which start afresh). ``retrying`` runs the read as the daemon's scrapes are run
    (retried on temporary errors)."""
    history = _read_store(source, tenants, elapsed_s, interval_s, retrying, "slo_period_counts",
                          "the SLO period so far", "every tenant's miss budget starts full", quiet=False)
    seen = {name for snapshot in history for name in snapshot.tenants}
    unknown = [name for name in tenants if name not in seen]
    if unknown and seen:
        log.warning("no SLO-period counts for tenants %s: their miss budgets start full", unknown,
                    extra={"fields": {"event": "slo_period_counts", "reason": "missing", "tenants": unknown}})
    return history, unknown


def recent_intervals(source: object, tenants: Sequence[str], count: int, interval_s: float,
                     retrying: Callable[[Callable[[], History]], History]) -> History:
    """The last ``count`` intervals before the daemon started, with ``tenants``' valid counts, for a policy's
    warm-up; none when the source has no store (a simulator: nothing came before) or it does not answer."""
    history = _read_store(source, tenants, count * interval_s, interval_s, retrying, "warm_up",
                          "the intervals to warm the policy up with", "it starts with an empty window", quiet=True)
    return history[-count:]


def _read_store(source: object, tenants: Sequence[str], seconds: float, interval_s: float,
                retrying: Callable[[Callable[[], History]], History], event: str, what: str, consequence: str,
                quiet: bool) -> History:
    """The source's last ``seconds`` in intervals, with only ``tenants``' valid counts; none when the source has
    no store (logged unless ``quiet``) or the store does not answer (logged). Log lines name ``what`` was read
    and the ``consequence`` of going without."""
    if not isinstance(source, PeriodHistory):
        if not quiet:
            log.warning("the metrics source (%s) cannot replay %s from before the daemon started: %s",
                        type(source).__name__, what, consequence,
                        extra={"fields": {"event": event, "reason": "unsupported"}})
        return []
    try:
        history = retrying(lambda: source.period_so_far(seconds, interval_s))
    except Exception as error:
        log.error("could not replay %s, %s: %s: %s", what, consequence, type(error).__name__, str(error)[:200],
                  extra={"fields": {"event": event, "reason": SCRAPE}})
        return []
    set_aside = sorted({name for snapshot in history for name in _keep_valid(snapshot, tenants)})
    if set_aside:
        log.warning("counts set aside from %s (not a tenant of the scenario, or not valid counts): %s", what,
                    set_aside, extra={"fields": {"event": event, "reason": "invalid"}})
    return history


def _keep_valid(snapshot: MetricsSnapshot, tenants: Sequence[str]) -> list[str]:
    """Drop the snapshot's tenants that are not ``tenants`` or whose replayed counts are not valid: the judged
    ones finite counts, the others counts or NaN (the store had none); return their names."""
    def valid(counters: dict[str, float]) -> bool:
        judged = all(math.isfinite(counters[name]) and counters[name] >= 0 for name in JUDGED_COUNTERS)
        return judged and not any(counters.get(name, 0.0) < 0 or counters.get(name, 0.0) == math.inf
                                  for name in HISTORY_COUNTERS)

    dropped = [name for name, metrics in snapshot.tenants.items()
               if name not in tenants or not valid(metrics.counters)]
    for name in dropped:
        del snapshot.tenants[name]
    return dropped
