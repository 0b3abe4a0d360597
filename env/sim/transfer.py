"""KV-cache transfers from prefill to decode replicas: reservation, waiting for memory, link contention.

Two options of ``ClusterConfig`` refine the original model (latency plus size over a private link, KV
memory taken when the transfer lands); both default off so committed evaluations stand:

- ``kv_reserve_before_transfer``: vLLM's P/D connectors (NixlConnector) allocate the request's blocks on the
  decode engine before the KV cache is read into them, so a decode replica without free blocks holds the
  transfer back, and the prefill replica keeps its copy meanwhile. Held-back transfers start in order as
  sequences finish on the decode replica.
- ``kv_link = "shared_pair"``: one link per (prefill replica, decode replica) pair, shared fairly
  (processor sharing) by the transfers in flight over it. Why per replica pair and not per pool pair: a
  replica sits on one node (tp never exceeds GPUs per node), each GPU of an HGX/DGX H100 node has its own
  400 Gb/s ConnectX-7 NIC (50 GB/s; NVIDIA DGX H100 user guide), and NIXL moves each tensor-parallel
  rank's shard over its own GPU's NIC, so a replica pair's transfers meet on the same NICs while different
  pairs' mostly do not. A per-pool link would make the aggregate bandwidth independent of the replica
  count, which real clusters do not show. What it misses: one prefill replica sending to two decode
  replicas at once shares its own NICs too.

The pair's bandwidth is ``min(tp_prefill, tp_decode)`` lanes of the per-GPU inter-node figure (the
hardware catalog's ``inter_node_gbps``, measured by Vidur: 36 GB/s per H100 across nodes): with different
tensor-parallel degrees each rank of the smaller side talks to several ranks of the larger one, so the
smaller side's NICs are the bottleneck. The bytes are the model's KV bytes per token times the prompt; they
do not depend on either side's tp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.sim.replica import Replica
from disaggpilot.env.sim.request import Request

# A transfer with at most this many bytes left is complete (float rounding of the shared-rate arithmetic).
_BYTES_EPSILON = 1.0


class TransferHost(Protocol):
    """What transfers need from the simulator."""

    now: float

    def schedule(self, time: float, callback: Callable[[Any], None], argument: Any) -> None: ...


Transfer = tuple[Request, Replica, Replica]
"""(request, prefill replica, decode replica)."""


class SharedLink:
    """A link whose bandwidth the transfers in flight over it share equally (processor sharing).

    Args:
        bytes_per_s: the link's bandwidth (bytes per second).
        host: the simulator, for the clock and events.
        on_done: called with a transfer and the time its last byte arrives.
    """

    def __init__(self, bytes_per_s: float, host: TransferHost, on_done: Callable[[Transfer, float], None]) -> None:
        self.bytes_per_s, self.host, self.on_done = bytes_per_s, host, on_done
        self.active: list[list[Any]] = []  # [bytes left, transfer]
        self.updated = 0.0
        self.version = 0

    def add(self, transfer: Transfer, size_bytes: float, now: float) -> None:
        """Start sending ``size_bytes`` bytes at ``now``."""
        self._drain(now)
        self.active.append([size_bytes, transfer])
        self._reschedule(now)

    def _drain(self, now: float) -> None:
        if self.active:
            sent = (now - self.updated) * self.bytes_per_s / len(self.active)
            for entry in self.active:
                entry[0] -= sent
        self.updated = now

    def _reschedule(self, now: float) -> None:
        # A new event supersedes the pending one: the share per transfer changed.
        self.version += 1
        if self.active:
            least = min(entry[0] for entry in self.active)
            finish = now + max(least, 0.0) * len(self.active) / self.bytes_per_s
            self.host.schedule(finish, self._on_event, self.version)

    def _on_event(self, version: int) -> None:
        if version != self.version:
            return
        now = self.host.now
        self._drain(now)
        done = [entry[1] for entry in self.active if entry[0] <= _BYTES_EPSILON]
        self.active = [entry for entry in self.active if entry[0] > _BYTES_EPSILON]
        self._reschedule(now)
        for transfer in done:
            self.on_done(transfer, now)


class KvTransfers:
    """Ships computed prompts' KV caches to decode replicas under the cluster's transfer options.

    Args:
        cluster: the transfer options and the fixed latency per transfer.
        host: the simulator, for the clock and events.
        kv_bytes_per_token: the model's KV bytes per token over all layers (bytes).
        link_gbps: bandwidth of one lane, a GPU's inter-node link (GB/s).
        landed: called with a transfer when its KV cache is on the decode replica.
    """

    def __init__(self, cluster: ClusterConfig, host: TransferHost, kv_bytes_per_token: float, link_gbps: float,
                 landed: Callable[[Transfer], None]) -> None:
        self.host, self.landed = host, landed
        self.latency_s = cluster.kv_transfer_latency_s
        self.reserve = cluster.kv_reserve_before_transfer
        self.shared = cluster.kv_link == "shared_pair"
        self.kv_bytes_per_token = kv_bytes_per_token
        lanes = min(cluster.prefill.tp, cluster.decode.tp)
        self.bytes_per_s = lanes * link_gbps * 1e9
        self.links: dict[tuple[Replica, Replica], SharedLink] = {}

    def send(self, request: Request, prefill: Replica, decode: Replica, now: float) -> None:
        """Start the transfer, or hold it until ``decode`` has room for the request's KV cache."""
        if self.reserve and (decode.awaiting_transfer or not decode.reserve_kv(request)):
            decode.hold_transfer(request, prefill)
            return
        self._start((request, prefill, decode), now)

    def kv_freed(self, decode: Replica, now: float) -> None:
        """``decode`` freed KV memory: start the transfers it holds back while they fit, in order."""
        waiting = decode.awaiting_transfer
        while waiting and decode.reserve_kv(waiting[0][0]):
            request, prefill = decode.release_held()
            self._start((request, prefill, decode), now)

    def _start(self, transfer: Transfer, now: float) -> None:
        size = transfer[0].prompt * self.kv_bytes_per_token
        if not self.shared:
            # Parenthesised as the original formula was, so default runs stay bit-identical.
            self.host.schedule(now + (self.latency_s + size / self.bytes_per_s), self.landed, transfer)
            return
        key = (transfer[1], transfer[2])
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = SharedLink(self.bytes_per_s, self.host, self._bytes_arrived)
        link.add(transfer, size, now)

    def _bytes_arrived(self, transfer: Transfer, now: float) -> None:
        # The fixed cost (handshake, completion notification) is paid once per transfer, outside the link.
        self.host.schedule(now + self.latency_s, self.landed, transfer)
