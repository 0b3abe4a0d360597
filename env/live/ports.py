"""TCP ports for local replicas that nothing else can take before the replica binds them.

A port chosen by binding to port 0 is released at once, and a vLLM replica on a CPU binds it 20-60 s later
(its NIXL side channel only after the engine has loaded). In between, the kernel may hand the same port to
another process's ``bind(0)`` or outgoing connection: in one CI run a replica's side channel found its port
taken (``zmq.error.ZMQError: Address already in use``), its handshake thread died and the replica never
answered ``/health``, costing a whole health timeout before the launcher restarted it.

The kernel hands out ports only from its ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999
by default on Linux), so ports chosen below that range are safe from it; and this process never hands the same
port out twice, so two replicas started together cannot be given one port either.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_FLOOR = 32768
"""Linux's default first ephemeral port, used when the range cannot be read."""
LOWEST_PORT = 20000
"""The pool is [LOWEST_PORT, ephemeral floor). Below it are registered services and Ray's default worker ports
(10002-19999, ``ray start --min-worker-port/--max-worker-port``), which a Ray node beside the launcher binds
late too."""

_lock = threading.Lock()
_handed_out: set[int] = set()
_chooser = random.Random()


def ephemeral_floor(range_file: Path = PORT_RANGE_FILE) -> int:
    """The first port of the kernel's ephemeral range (the default when the file is missing or unreadable)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_FLOOR


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to now, outside the kernel's ephemeral range and never handed
    out before by this process (the system's choice when that range leaves no room below it)."""
    floor = ephemeral_floor()
    if floor - LOWEST_PORT < 256:
        return _system_port(host)
    with _lock:
        start = _chooser.randrange(LOWEST_PORT, floor)  # processes launching side by side start apart
        for offset in range(floor - LOWEST_PORT):
            port = LOWEST_PORT + (start - LOWEST_PORT + offset) % (floor - LOWEST_PORT)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    return _system_port(host)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _system_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
