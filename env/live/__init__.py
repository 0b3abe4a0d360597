"""The live backend: a real cluster behind ``ClusterBackend``. Must never import ``env.sim`` (pyproject contracts).

Reading (this package's Prometheus side; modules are imported on use, nothing here is eager):

- ``env.live.config``: ``LiveConfig`` / ``PrometheusSourceConfig`` (``configs/env/live.yaml``).
- ``env.live.promql``: ``PrometheusClient``, instant queries over the HTTP API with an injected transport.
- ``env.live.source``: ``PrometheusSource``, the metrics contract (docs/metrics.md) for one interval, with data issues.
- ``env.live.backend``: ``LiveBackend`` (source + ``env.backend.Actuator`` + clock) and ``live_backend_factory``.
- ``env.live.errors``: the errors, retryable (``TemporaryError``) or permanent (``PermanentError``) by type.

Acting:

- ``env.live.kubernetes``: ``KubernetesActuator``, replicas and knobs of the pools' workloads.
- ``env.live.local_actuator``: ``LocalProcessActuator``, replicas as local processes of ``env.live.launcher``
  (settings in ``env.live.launcher_config``); ``env.live.startup`` brings up a scenario's initial replicas.

The local cluster around them (gateway, emulated replicas, load generator, a local Prometheus) is the sibling
package ``localcluster``, which this package never imports.
"""
