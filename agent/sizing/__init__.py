"""Capacity sizing shared by the learned policy and the baselines: measured demand in, replica counts out.

The learned ``headroom`` action mode (:mod:`agent.headroom`) decodes each action through
:class:`~agent.sizing.sizer.HeadroomSizer`, and the planner baselines (``headroom_planner``, ``sla_planner``,
``dynamo_planner``, ``feed_forward``) size with the same pieces, so the policy's action decoding depends on
no baseline (an import-linter contract in ``pyproject.toml`` keeps it so):

- :mod:`agent.sizing.sizer`: the headroom sizer, its settings and the GPU-budget fit;
- :mod:`agent.sizing.demand`: how a window of per-interval needs becomes one plan (peak or quantile);
- :mod:`agent.sizing.profile`: one replica's TTFT and token rates read off the performance model;
- :mod:`agent.sizing.signals`: the load and latencies read from an interval's snapshots;
- :mod:`agent.sizing.pools`: a pool's current replica count and its limits.
"""
