"""The launcher's discovery file, read when it changes.

The launcher replaces the file atomically (write, then rename), so a read sees a whole version. A file
that is missing or malformed leaves the previous replica set in force and is logged once per version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from disaggpilot.env.errors import ConfigError
from disaggpilot.localcluster.gateway.config import ReplicaEndpoint
from disaggpilot.localcluster.gateway.routing import ReplicaRegistry

log = logging.getLogger("disaggpilot.gateway.discovery")


def read_discovery(path: str | Path) -> list[ReplicaEndpoint]:
    """Replicas listed in a discovery file ``{"replicas": [{name, role, url, state}, ...]}``.

    Raises:
        ConfigError: the file is not that JSON shape or a replica entry is invalid.
        OSError: the file cannot be read.
    """
    raw = json.loads(Path(path).read_text())
    entries = raw.get("replicas") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected an object with a 'replicas' list")
    replicas = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: replicas[{index}] is not an object")
        known = {key: entry[key] for key in ("name", "role", "url", "state") if key in entry}
        try:
            replicas.append(ReplicaEndpoint(**known))
        except ConfigError as error:
            raise ConfigError(f"{path}: replicas[{index}].{error}") from None
    return replicas


class DiscoveryWatcher:
    """Keeps a :class:`ReplicaRegistry` in step with a discovery file, polling its modification stamp.

    Args:
        path: the discovery file.
        registry: the registry to update.
        poll_s: seconds between checks.
    """

    def __init__(self, path: str | Path, registry: ReplicaRegistry, poll_s: float) -> None:
        self.path = Path(path)
        self.registry = registry
        self.poll_s = poll_s
        self._seen: tuple[int, int, int] | None = None
        self._failed: tuple[int, int, int] | None = None

    def poll_once(self) -> bool:
        """Reload when the file changed since the last successful read; True when the set was updated."""
        try:
            info = os.stat(self.path)
        except OSError:
            self._warn_once((0, 0, 0), "discovery file %s is missing; keeping %d replicas")
            return False
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp == self._seen:
            return False
        try:
            replicas = read_discovery(self.path)
        except (OSError, ValueError) as error:  # ConfigError and JSONDecodeError are ValueErrors
            self._warn_once(stamp, f"discovery file %s unreadable ({error}); keeping %d replicas")
            return False
        self.registry.update(replicas)
        self._seen = stamp
        log.info("discovery: %d replicas (%s)", len(replicas),
                 ", ".join(f"{r.name}={r.state}" for r in replicas))
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            self.poll_once()
            await asyncio.sleep(self.poll_s)

    def _warn_once(self, stamp: tuple[int, int, int], message: str) -> None:
        if stamp != self._failed:
            self._failed = stamp
            log.warning(message, self.path, len(self.registry.replicas()))
