"""The world: catalog, performance model, workload, metrics contract, backends and the Gymnasium env.

Importing ``env`` registers ``disaggpilot/DisaggCluster-v0`` with Gymnasium.
"""

import gymnasium

ENV_ID = "disaggpilot/DisaggCluster-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="disaggpilot.env.cluster_env:DisaggClusterEnv")
