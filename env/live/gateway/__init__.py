"""The tenant-aware prefill/decode gateway: an OpenAI-compatible async proxy in front of vLLM-like replicas.

Run it with ``python -m env.live.gateway --config gateway.yaml``, or from Python::

    async with Gateway(GatewayConfig.from_file("gateway.yaml")) as gateway:
        print(gateway.url)

See :mod:`env.live.gateway.proxy` for what is guaranteed when a replica fails.
"""

from env.live.gateway.config import GatewayConfig, ReplicaEndpoint, TenantConfig
from env.live.gateway.server import Gateway

__all__ = ["Gateway", "GatewayConfig", "ReplicaEndpoint", "TenantConfig"]
