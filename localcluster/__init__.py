"""The local cluster: what a developer runs on one machine to try the daemon against emulated or real replicas.

Nothing in ``env``, ``agent`` or ``controller`` imports this package (pyproject's import-linter contracts); it
imports ``env`` for the scenario, the performance model and the metrics contract. Modules are imported on use:

- ``localcluster.rig``: ``LocalCluster`` (replicas, gateway and Prometheus for one scenario) and
  ``python -m disaggpilot.localcluster.rig`` / ``disaggpilot rig``; its settings in ``localcluster.rig_config``.
- ``localcluster.gateway``: the tenant-aware P/D gateway (``python -m disaggpilot.localcluster.gateway``).
- ``localcluster.emulator``: an emulated vLLM replica timed by the performance model
  (``python -m disaggpilot.localcluster.emulator``, started by ``env.live.launcher``).
- ``localcluster.loadgen``: replays a scenario against an OpenAI-compatible endpoint; its settings in
  ``localcluster.loadgen_config`` and its Hydra app (``disaggpilot loadgen``) in ``localcluster.loadgen_app``.
- ``localcluster.prometheus_server``: ``PrometheusServer``, a real local Prometheus process.
- ``localcluster.exposition``: ``ExpositionServer``, an HTTP endpoint serving a text exposition (a stand-in target).
- ``localcluster.tiny_model``: a tiny random-weight Llama for real vLLM on a CPU.
"""
