"""``python -m disaggpilot.localcluster.gateway --config FILE [--host H] [--port P]``: serve until SIGINT or SIGTERM.

Prints ``gateway listening on http://HOST:PORT`` on stdout once it accepts requests (scripts wait for it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence

from disaggpilot.env.errors import ConfigError
from disaggpilot.localcluster.gateway.config import GatewayConfig
from disaggpilot.localcluster.gateway.server import Gateway


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m disaggpilot.localcluster.gateway", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML file with the GatewayConfig fields")
    parser.add_argument("--host", help="override the config's host")
    parser.add_argument("--port", type=int, help="override the config's port (0: a free port)")
    parser.add_argument("--log-level", default="INFO", help="logging level (INFO logs one line per request)")
    return parser.parse_args(argv)


async def serve(config: GatewayConfig) -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Gateway(config) as gateway:
        print(f"gateway listening on {gateway.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m disaggpilot.localcluster.gateway``."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = GatewayConfig.from_file(args.config)
        overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
        config = dataclasses.replace(config, **overrides) if overrides else config
    except ConfigError as error:
        sys.exit(f"gateway config: {error}")
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
