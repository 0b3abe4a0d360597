"""The live backend (Prometheus source, actuators). Must never import ``env.sim``; see pyproject contracts."""
