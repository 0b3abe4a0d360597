"""Analysis helpers for the policy evaluation notebooks (``notebooks/``), built on ``agent.evaluation``.

Plain rows (lists of dicts) and series (lists of floats), no data-frame library; matplotlib draws them::

    from disaggpilot.agent.analysis import policy_set, shipped_bundle, summary_rows
    from disaggpilot.agent.evaluation import EvaluationPlan, evaluate, resolve_scenarios

    policies = policy_set(["static", "threshold"], {"ppo": shipped_bundle()})
    results = evaluate(EvaluationPlan(policies, resolve_scenarios(["steady"], duration_s=900), seeds=[0]))
    rows = summary_rows(results)

- :mod:`agent.analysis.sources`: paths, the shipped bundle, policy configs;
- :mod:`agent.analysis.tables`: the verdict, summary and per-tenant rows, Markdown tables;
- :mod:`agent.analysis.spend`: where one policy spends less than another, and where more;
- :mod:`agent.analysis.whatif`: scenario variants (price, GPU type, cold start, load, tenant mix, serving
  mode) and sweeps over them;
- :mod:`agent.analysis.serving`: disaggregated against aggregated serving, per workload;
- :mod:`agent.analysis.behaviour`: recorded episodes (observations, actions, reward terms) and a bundle's
  action over a grid of two features;
- :mod:`agent.analysis.tensorboard`: a training run's TensorBoard scalars.
"""

from disaggpilot.agent.analysis.serving import serving_rows, serving_verdicts
from disaggpilot.agent.analysis.sources import (
    SHIPPED_BUNDLE,
    AnalysisError,
    bundle_config,
    output_directory,
    policy_config,
    policy_set,
    resolve_path,
    shipped_bundle,
)
from disaggpilot.agent.analysis.spend import cost_gap, spend_by_load, spend_rows
from disaggpilot.agent.analysis.tables import Column, episode, markdown_table, summary_rows, tenant_rows, verdict_rows
from disaggpilot.agent.analysis.whatif import SERVING_MODES, SweepResult, WhatIf, aggregated, price_of, sweep

__all__ = [
    "SERVING_MODES",
    "SHIPPED_BUNDLE",
    "AnalysisError",
    "Column",
    "SweepResult",
    "WhatIf",
    "aggregated",
    "bundle_config",
    "cost_gap",
    "episode",
    "markdown_table",
    "output_directory",
    "policy_config",
    "policy_set",
    "price_of",
    "resolve_path",
    "serving_rows",
    "serving_verdicts",
    "shipped_bundle",
    "spend_by_load",
    "spend_rows",
    "summary_rows",
    "sweep",
    "tenant_rows",
    "verdict_rows",
]
