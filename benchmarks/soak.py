"""Load/soak run of the gateway on loopback: bounded in time and in requests; counts every request's fate.

Processes: emulated replicas (``python -m disaggpilot.localcluster.emulator``, one prefill and ``--decodes`` decode
replicas at ``--time-scale``), the gateway (``python -m disaggpilot.localcluster.gateway``, a process of its own so its
memory is its own) and this client, which keeps ``--concurrency`` streamed requests open until ``--requests`` were
sent or ``--duration-s`` passed. Each request asks for ``--tokens`` tokens (``ignore_eos``) after a 64-word prompt.

Printed: requests sent, answered (200 and every token, ending in ``[DONE]``), failed (an error status),
lost (a 200 stream that ended short, or a broken connection), throughput, and the gateway's resident memory:
idle (listening, before any request) and peak (``VmHWM`` of ``/proc/<pid>/status``), with their ratio, the
reference measured in the same run.

Usage: ``python benchmarks/soak.py [--duration-s 60] [--requests 2000] [--concurrency 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.localcluster.upstreams import free_port, start_emulators  # noqa: E402

KEY = "soak-benchmark-key-0001"


def memory_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


async def one_request(session: aiohttp.ClientSession, url: str, tokens: int) -> str:
    """Send one streamed completion; its fate: ``answered``, ``failed`` or ``lost``."""
    body = {"model": "emu", "prompt": " ".join(["soak"] * 64), "max_tokens": tokens, "ignore_eos": True,
            "stream": True}
    received, done = 0, False
    try:
        async with session.post(url + "/v1/completions", json=body,
                                headers={"Authorization": f"Bearer {KEY}"}) as response:
            if response.status != 200:
                await response.read()
                return "failed"
            async for line in response.content:
                done = done or line.strip() == b"data: [DONE]"
                received += line.startswith(b"data: {") and b'"text":"' in line and b'"text":""' not in line
    except (TimeoutError, aiohttp.ClientError):
        return "lost"
    return "answered" if done and received == tokens else "lost"


async def soak(url: str, args: argparse.Namespace) -> tuple[Counter[str], float]:
    """Keep ``args.concurrency`` requests open until the count or the time runs out; (fates, wall s)."""
    fates: Counter[str] = Counter()
    deadline = time.monotonic() + args.duration_s
    sent = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < args.requests and time.monotonic() < deadline:
            sent += 1
            fates["sent"] += 1
            fates[await one_request(session, url, args.tokens)] += 1

    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        await one_request(session, url, args.tokens)  # warm-up, not counted
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return fates, time.monotonic() - started


def run(args: argparse.Namespace) -> None:
    roles = ["prefill"] + ["decode"] * args.decodes
    with start_emulators(roles, time_scale=args.time_scale) as started, tempfile.TemporaryDirectory() as tmp:
        config = {"tenants": [{"name": "soak", "api_key": KEY, "max_concurrency": 100000}], "model": "emu",
                  "max_model_len": 4096, "replicas": [entry for entry, _ in started], "port": free_port()}
        path = Path(tmp) / "gateway.json"
        path.write_text(json.dumps(config))
        gateway = subprocess.Popen([sys.executable, "-m", "disaggpilot.localcluster.gateway", "--config", str(path),
                                    "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            url = (gateway.stdout.readline() if gateway.stdout else "").split()[-1]
            idle_kib = memory_kib(gateway.pid, "VmRSS")
            fates, wall_s = asyncio.run(soak(url, args))
            report(fates, wall_s, idle_kib, memory_kib(gateway.pid, "VmHWM"), memory_kib(gateway.pid, "VmRSS"))
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)


def report(fates: Counter[str], wall_s: float, idle_kib: int, peak_kib: int, end_kib: int) -> None:
    """Print the counts and the memory figures."""
    unaccounted = fates["sent"] - fates["answered"] - fates["failed"] - fates["lost"]
    print(f"requests sent {fates['sent']}, answered {fates['answered']}, failed {fates['failed']}, "
          f"lost {fates['lost']}, unaccounted {unaccounted}; {wall_s:.1f} s, {fates['sent'] / wall_s:.0f} req/s")
    print(f"gateway RSS idle {idle_kib / 1024:.1f} MiB, peak {peak_kib / 1024:.1f} MiB, at end "
          f"{end_kib / 1024:.1f} MiB; peak/idle {peak_kib / idle_kib:.2f}, end/idle {end_kib / idle_kib:.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=60.0, help="stop sending after this long (s)")
    parser.add_argument("--requests", type=int, default=2000, help="stop after sending this many")
    parser.add_argument("--concurrency", type=int, default=64, help="requests open at once")
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per request")
    parser.add_argument("--decodes", type=int, default=2, help="emulated decode replicas")
    parser.add_argument("--time-scale", type=float, default=0.01, help="emulator time factor (GPU s per s)")
    args = parser.parse_args(argv)
    for name in ("duration_s", "requests", "concurrency", "tokens", "decodes", "time_scale"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    return args


if __name__ == "__main__":
    run(parse_args())
