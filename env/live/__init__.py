"""The live backend: a real cluster behind ``ClusterBackend``. Must never import ``env.sim`` (pyproject contracts).

Reading (this package's Prometheus side; modules are imported on use, nothing here is eager):

- ``env.live.config``: ``LiveConfig`` / ``PrometheusSourceConfig`` (``configs/env/live.yaml``).
- ``env.live.promql``: ``PrometheusClient``, instant queries over the HTTP API with an injected transport.
- ``env.live.source``: ``PrometheusSource``, the metrics contract (docs/metrics.md) for one interval, with data issues.
- ``env.live.backend``: ``LiveBackend`` (source + ``env.backend.Actuator`` + clock) and ``live_backend_factory``.
- ``env.live.prometheus_server``: ``PrometheusServer``, a real local Prometheus process (tests, local rig).
- ``env.live.exposition``: ``ExpositionServer``, an HTTP endpoint serving a text exposition (a stand-in target).
- ``env.live.errors``: the errors, retryable (``TemporaryError``) or permanent (``PermanentError``) by type.
"""
