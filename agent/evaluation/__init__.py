"""Policy evaluation: policies × scenarios × seeds on ``DisaggClusterEnv``, with tables, CSVs and plots.

The facade ``disaggpilot evaluate`` (``agent/evaluate.py``) is built on::

    plan = EvaluationPlan(policies={"static": {"kind": "static"}}, scenarios=[scenario], seeds=[0, 1])
    results = evaluate(plan)
    outputs = write_outputs(results, plan.scenarios, Path("out"), plan.describe())

Policies are built by one factory, :func:`build_policy`, which dispatches on a config's ``kind``.
"""

from disaggpilot.agent.evaluation.episode import EpisodeResult, EpisodeTask, run_episode
from disaggpilot.agent.evaluation.outputs import EvaluationOutputs, write_outputs
from disaggpilot.agent.evaluation.plan import EvaluationPlan, plan_from_config
from disaggpilot.agent.evaluation.policies import POLICY_KINDS, PolicySpec, build_policy, known_kinds
from disaggpilot.agent.evaluation.runner import evaluate, run_tasks
from disaggpilot.agent.evaluation.scenarios import TraceOverride, resolve_scenarios

__all__ = [
    "POLICY_KINDS",
    "EpisodeResult",
    "EpisodeTask",
    "EvaluationOutputs",
    "EvaluationPlan",
    "PolicySpec",
    "TraceOverride",
    "build_policy",
    "evaluate",
    "known_kinds",
    "plan_from_config",
    "resolve_scenarios",
    "run_episode",
    "run_tasks",
    "write_outputs",
]
