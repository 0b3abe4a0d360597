"""What a daemon joining an SLO period under way needs to know of it: each tenant's requests so far.

Without them a restarted daemon would think every tenant's miss budget full and let a policy that paces its
budget spend it twice. The counts come from the source's metrics store (``env.backend.JudgedHistory``: the
gateway's counters in Prometheus); a source without one, a store that does not answer and counts that are not
valid all leave the tenants concerned with a full budget, and say so in the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from disaggpilot.controller.validate import SCRAPE
from disaggpilot.env.backend import JudgedHistory, TenantCounts

log = logging.getLogger("disaggpilot.controller")


def judged_so_far(source: object, tenants: Sequence[str], elapsed_s: float,
                  retrying: Callable[[Callable[[], TenantCounts]], TenantCounts]) -> tuple[TenantCounts, list[str]]:
    """Each of ``tenants``' valid (met, missed) counts over the period's first ``elapsed_s`` seconds, and the
    tenants left without (which start with a full budget). ``retrying`` runs a read as the daemon's scrapes
    are run (retried on temporary errors)."""
    read: TenantCounts = {}
    if not isinstance(source, JudgedHistory):
        log.warning("the metrics source (%s) cannot count requests from before the daemon started: every tenant's "
                    "miss budget starts full", type(source).__name__,
                    extra={"fields": {"event": "slo_period_counts", "reason": "unsupported"}})
    else:
        try:
            read = retrying(lambda: source.judged_over_last(elapsed_s))
        except Exception as error:
            log.error("could not count the SLO period's requests so far, every tenant's miss budget starts full: "
                      "%s: %s", type(error).__name__, str(error)[:200],
                      extra={"fields": {"event": "slo_period_counts", "reason": SCRAPE}})
    judged = {name: counts for name, counts in read.items() if name in tenants and _valid(counts)}
    if set(read) - set(judged):
        log.warning("SLO-period counts set aside (not a tenant of the scenario, or not finite counts >= 0): %s",
                    {name: counts for name, counts in read.items() if name not in judged},
                    extra={"fields": {"event": "slo_period_counts", "reason": "invalid"}})
    unknown = [name for name in tenants if name not in judged]
    if unknown and read:
        log.warning("no SLO-period counts for tenants %s: their miss budgets start full", unknown,
                    extra={"fields": {"event": "slo_period_counts", "reason": "missing", "tenants": unknown}})
    return judged, unknown


def _valid(counts: tuple[float, float]) -> bool:
    return len(counts) == 2 and all(isinstance(c, int | float) and math.isfinite(c) and c >= 0 for c in counts)
