"""The controller daemon (docs/architecture.md): loop, shield, fallback, its own metrics and health endpoints.

Kept import-light on purpose: ``controller.cli`` lives here and must start without torch. Modules:

- ``config``: settings dataclasses (Hydra schemas); ``errors``: temporary vs permanent errors.
- ``validate``: snapshot checks; ``shield``: safety rules; ``policies``: the bundle policy and the fallback.
- ``loop``: the decision loop, with ``clock``, ``actuators``, ``history`` and ``decision`` (the log record).
- ``telemetry``: Prometheus metrics, ``/metrics``, ``/healthz``, ``/readyz``; ``logs``: JSON log lines.
- ``app``: the ``disaggpilot controller`` Hydra app; ``testing``: fakes for tests.
"""
