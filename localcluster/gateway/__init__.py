"""The tenant-aware prefill/decode gateway: an OpenAI-compatible async proxy in front of vLLM-like replicas.

Run it with ``python -m disaggpilot.localcluster.gateway --config gateway.yaml``, or from Python::

    async with Gateway(GatewayConfig.from_file("gateway.yaml")) as gateway:
        print(gateway.url)

See :mod:`localcluster.gateway.proxy` for what is guaranteed when a replica fails.
"""

from disaggpilot.localcluster.gateway.config import GatewayConfig, ReplicaEndpoint, TenantConfig
from disaggpilot.localcluster.gateway.server import Gateway

__all__ = ["Gateway", "GatewayConfig", "ReplicaEndpoint", "TenantConfig"]
