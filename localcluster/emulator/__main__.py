"""``python -m disaggpilot.localcluster.emulator``: serve one emulated replica until SIGTERM or SIGINT, then drain
and exit."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Sequence

from disaggpilot.env.errors import PermanentError
from disaggpilot.localcluster.emulator.config import EmulatorConfig, parse_args
from disaggpilot.localcluster.emulator.server import ReplicaServer

log = logging.getLogger("disaggpilot.emulator")


async def serve(config: EmulatorConfig) -> int:
    """Run the replica; returns the exit status (0 when every in-flight request finished on shutdown)."""
    server = ReplicaServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    log.info("ready on %s (role %s)", server.url, config.role)
    await stop.wait()
    log.info("draining: %d requests in flight", server.in_flight)
    drained = await server.drain(config.drain_timeout_s)
    await server.close()
    log.info("stopped (%s)", "drained" if drained else "drain timed out")
    return 0 if drained else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, log the resolved config, serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = parse_args(argv)
        log.info("config %s", json.dumps(dataclasses.asdict(config), sort_keys=True))
        return asyncio.run(serve(config))
    except PermanentError as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
