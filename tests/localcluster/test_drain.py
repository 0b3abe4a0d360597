"""A scale-down while requests are provably in flight on the replica removed loses none (issue 21, finding 6),
with emulated replicas under the real launcher, behind the real gateway reading the launcher's discovery file.
The same run against real vLLM is in ``test_real_vllm.py``; the procedure is in ``drain_support.py``."""

from __future__ import annotations

from pathlib import Path

from disaggpilot.env.live.launcher import Launcher
from disaggpilot.env.live.launcher_config import EmulatorSettings, LauncherConfig
from disaggpilot.localcluster.gateway import Gateway, GatewayConfig, TenantConfig
from tests.localcluster.drain_support import DrainRun, assert_none_lost, drain_during_streams
from tests.localcluster.upstreams import KEYS, run

START_TIMEOUT_S = 30.0
STREAMS = 6
OUTPUT_TOKENS = 120
"""Output tokens per request: about 3 s of emulated decode at time_scale 1, so a drain falls inside them."""


def launcher_config(tmp_path: Path) -> LauncherConfig:
    return LauncherConfig(kind="emulator", served_model_name="tiny", discovery_path=str(tmp_path / "replicas.json"),
                          log_dir=str(tmp_path / "logs"), poll_interval_s=0.1, drain_grace_s=0.5,
                          health_timeout_s=START_TIMEOUT_S, stop_timeout_s=10.0,
                          emulator=EmulatorSettings(max_model_len=512, time_scale=1.0))


def test_scale_down_with_requests_in_flight_on_the_drained_replica_loses_none(tmp_path: Path) -> None:
    with Launcher(launcher_config(tmp_path)) as launcher:
        launcher.set_target("prefill", 1)
        launcher.set_target("decode", 2)
        assert launcher.wait_until(lambda: launcher.counts("decode")["ready"] == 2
                                   and launcher.counts("prefill")["ready"] == 1, START_TIMEOUT_S)
        drained = launcher.replicas("decode")[-1]  # the newest goes first on a scale-down

        async def body() -> DrainRun:
            config = GatewayConfig(tenants=[TenantConfig(name="alpha", api_key=KEYS["alpha"])], model="tiny",
                                   max_model_len=512, discovery_file=launcher.config.discovery_path,
                                   discovery_poll_s=0.05, retry_backoff_s=0.0)
            async with Gateway(config) as gateway:
                return await drain_during_streams(launcher, gateway.url, KEYS["alpha"], "tiny", STREAMS,
                                                  OUTPUT_TOKENS)

        drain = run(body(), 90)
        assert [len(a.tokens) for a in drain.answers] == [OUTPUT_TOKENS] * STREAMS  # one token per emulated chunk
        assert_none_lost(drain, launcher, drained, OUTPUT_TOKENS)
